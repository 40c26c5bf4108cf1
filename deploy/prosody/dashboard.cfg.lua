-- The fieldbridge web dashboard on Prosody (0.12): WebSocket and BOSH for
-- the page's XMPP connection, and (optionally) the page itself from
-- Prosody's HTTP server, so that page and WebSocket share one origin.
--
-- Merge into /etc/prosody/prosody.cfg.lua (or drop into conf.d/), then
-- `prosodyctl reload`. The dashboard is then at
-- https://example.org:5281/dashboard/ with the WebSocket at
-- wss://example.org:5281/xmpp-websocket.

-- Global section: add these to your modules_enabled.
modules_enabled = {
    -- ... your modules ...
    "websocket";   -- /xmpp-websocket
    "bosh";        -- /http-bind (the page falls back to it)
    "http_files";  -- the dashboard's files (leave out when fieldbridge serves them)
}
-- Prosody's HTTP(S) ports; the public ones behind your certificate.
https_ports = { 5281 }
-- The built dashboard (the Debian package puts it here; from a checkout:
-- dashboard/dist after scripts/build-dashboard).
http_files_dir = "/usr/share/fieldbridge/dashboard"
http_paths = { files = "/dashboard" }
-- The files are served on the VirtualHost names; a browser that asks for
-- another name (an IP address) gets them from this host:
-- http_default_host = "example.org"

-- Origins. Prosody 0.12 does not check the Origin of a WebSocket and
-- answers BOSH's CORS requests from anywhere, so a page from another origin
-- (fieldbridge's own `dashboard.listen`, a reverse proxy) works as is. To
-- allow only your dashboard's origin:
-- access_control_allow_origins = { "https://dashboard.example.org" }
-- (Prosody 0.11 needs cross_domain_websocket = { "https://dashboard.example.org" }
-- and cross_domain_bosh = { ... } instead.)

-- Behind a TLS-terminating reverse proxy that talks plain HTTP to Prosody,
-- tell Prosody the browser's link is encrypted, or it refuses PLAIN logins:
-- consider_websocket_secure = true
-- consider_bosh_secure = true
