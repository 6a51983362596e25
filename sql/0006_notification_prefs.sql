-- Notification preferences of a person, or an organisation's default for its people:
-- {"channels": {"<type>" | "<prefix>.*" | "*": ["feed", "email", ...]},
--  "topics": ["<slug>", ...], "reminder_offsets_days": [14, 3]}
CREATE TABLE sp_notification_prefs (
    user_id    uuid UNIQUE REFERENCES sp_users (id) ON DELETE CASCADE,
    org_id     uuid UNIQUE REFERENCES sp_organizations (id) ON DELETE CASCADE,
    prefs      jsonb NOT NULL CHECK (jsonb_typeof(prefs) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((user_id IS NULL) <> (org_id IS NULL))
);
