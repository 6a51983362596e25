-- Identity: organisations, users (argon2id password hashes), bearer tokens stored
-- only as SHA-256 digests (a dump holds no usable token).
CREATE TABLE sp_organizations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind        text NOT NULL CHECK (kind IN ('sme', 'large_enterprise', 'hospital',
                    'university', 'research_centre', 'association', 'public_body', 'other')),
    country     text CHECK (country ~ '^[A-Z]{2}$'),
    region      text CHECK (length(region) <= 100),
    website     text CHECK (length(website) <= 300),
    description text CHECK (length(description) <= 5000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sp_users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    display_name  text NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
    password_hash text,
    is_admin      boolean NOT NULL DEFAULT false,
    org_id        uuid REFERENCES sp_organizations (id) ON DELETE SET NULL,
    org_role      text CHECK (org_role IN ('member', 'manager')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((org_id IS NULL) = (org_role IS NULL))
);
CREATE UNIQUE INDEX sp_users_email_key ON sp_users (lower(email));

CREATE TABLE sp_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES sp_users (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('session', 'api')),
    name         text NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    prefix       text NOT NULL,
    digest       bytea NOT NULL UNIQUE CHECK (length(digest) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX sp_tokens_user ON sp_tokens (user_id);
