-- A Multi-User Chat (XEP-0045) service for fieldbridge's alerts room, on
-- Prosody 0.12.
--
-- Drop into /etc/prosody/conf.d/ next to fieldbridge.cfg.lua, with your
-- domain, then `prosodyctl reload`. On the gateway:
--     alerts: { to: [...], room: plant-alerts@conference.example.org, nick: fieldbridge }
--
-- The gateway joins the room from gw.example.org/alerts. If the room does
-- not exist and the service lets it, the gateway creates it members-only
-- and persistent, with every bare JID of access.read as a member (people
-- added to access.read later are added by hand, from an owner's client).
-- It acts on `fieldbridge: ack …` in the room only from an occupant whose
-- real JID it sees (a non-anonymous room: "who may see real JIDs: anyone"),
-- and says why it refuses otherwise.

Component "conference.example.org" "muc"
    -- Who may create rooms. "local" means users of example.org; the
    -- gateway's JID (gw.example.org) is not one of them, so either create
    -- the room yourself (join it from your client: it is made, you own it;
    -- make it members-only and persistent, add the readers and
    -- gw.example.org as members),
    restrict_room_creation = "local"
    -- or let the gateway create it by making its domain an admin of this
    -- service (it then owns every room here: fine on a service of its own):
    -- admins = { "gw.example.org" }

    -- Defaults for rooms people create (the gateway configures its own):
    -- muc_room_default_persistent = true
    -- muc_room_default_members_only = true
    -- muc_room_default_public_jids = true   -- non-anonymous
    -- How many messages a joining client may ask for (the gateway asks
    -- for none):
    -- max_history_messages = 20
