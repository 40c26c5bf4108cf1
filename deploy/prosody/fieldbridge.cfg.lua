-- fieldbridge as an external component (XEP-0114) of Prosody.
--
-- Put this file in /etc/prosody/conf.d/ (Debian includes that directory),
-- replace gw.example.org with a subdomain of your server, and set a long
-- random secret (e.g. `openssl rand -base64 32`). Give the gateway the same
-- secret in /etc/fieldbridge/component.secret, then:
--     prosodyctl reload   (or restart prosody)
--
-- The component protocol is not encrypted: keep the component port on
-- loopback, and run fieldbridge on the same machine. A gateway elsewhere
-- connects over TLS: see fieldbridge-tls.cfg.lua.

component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

-- Small stanzas should not wait for Nagle's algorithm (~40 ms each).
network_settings = { nagle = false }

-- Devices will be <device-id>@gw.example.org; the pubsub service with one
-- node per device is served by fieldbridge itself at gw.example.org (this is
-- not Prosody's mod_pubsub, which needs no configuration here).
Component "gw.example.org"
    component_secret = "change me: a long random secret"
