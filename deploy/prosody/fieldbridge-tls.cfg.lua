-- fieldbridge over an encrypted link: Prosody's Direct-TLS port.
--
-- For a gateway on another machine than Prosody (any link that leaves the
-- machine must be encrypted). Use this file instead of fieldbridge.cfg.lua,
-- in /etc/prosody/conf.d/, with your domain and a long random secret.
--
-- Prosody 0.12's net_multiplex serves TLS from the first byte on ssl_ports
-- and routes a stream whose header declares jabber:component:accept to the
-- component. The gateway sends the component's name as SNI: Prosody needs a
-- certificate for gw.example.org (e.g. `prosodyctl cert import` of a Let's
-- Encrypt certificate, or /etc/prosody/certs/gw.example.org.crt and .key).
-- On the gateway:
--     xmpp: { server: "xmpp.example.org:5348", tls: {} }
-- (tls: { ca_file: ... } for a private CA; server_name: if the certificate
-- is for another name.)

-- In prosody.cfg.lua, add "net_multiplex" to modules_enabled (a
-- modules_enabled here would replace the whole list).

-- Set ssl_interfaces: net_multiplex otherwise binds every interface. Use
-- the address the gateway reaches, and open only this port to it.
ssl_ports = { 5348 }
ssl_interfaces = { "192.0.2.1" }

-- The clear-text component port stays on loopback (or is removed).
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

network_settings = { nagle = false }

Component "gw.example.org"
    component_secret = "change me: a long random secret"
