-- Matchmaking: stored match requests (the history behind GET /v1/matches) and
-- introductions between organisations. Tables are prefixed with the plugin's name.
CREATE TABLE matchmaking_matches (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq        bigserial NOT NULL UNIQUE,
    org_id     uuid NOT NULL REFERENCES sp_organizations (id) ON DELETE CASCADE,
    user_id    uuid REFERENCES sp_users (id) ON DELETE SET NULL,
    scorer     text NOT NULL CHECK (length(scorer) BETWEEN 1 AND 64),
    request    jsonb NOT NULL,
    results    jsonb NOT NULL,
    -- Idempotency-Key of the request that created it, and an MD5 of that request's body
    idempotency_key text CHECK (length(idempotency_key) <= 200),
    fingerprint     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX matchmaking_matches_org ON matchmaking_matches (org_id, seq DESC);

CREATE TABLE matchmaking_introductions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq        bigserial NOT NULL UNIQUE,
    from_org   uuid NOT NULL REFERENCES sp_organizations (id) ON DELETE CASCADE,
    to_org     uuid NOT NULL REFERENCES sp_organizations (id) ON DELETE CASCADE,
    from_user  uuid REFERENCES sp_users (id) ON DELETE SET NULL,
    match_id   uuid REFERENCES matchmaking_matches (id) ON DELETE SET NULL,
    message    text NOT NULL CHECK (length(message) BETWEEN 1 AND 2000),
    status     text NOT NULL DEFAULT 'pending'
               CHECK (status IN ('pending', 'accepted', 'declined')),
    decided_by uuid REFERENCES sp_users (id) ON DELETE SET NULL,
    decided_at timestamptz,
    idempotency_key text CHECK (length(idempotency_key) <= 200),
    fingerprint     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (from_user, idempotency_key),
    CHECK (from_org <> to_org),
    CHECK ((status = 'pending') = (decided_at IS NULL))
);
-- At most one pending request from one organisation to another.
CREATE UNIQUE INDEX matchmaking_introductions_pending
    ON matchmaking_introductions (from_org, to_org) WHERE status = 'pending';
CREATE INDEX matchmaking_introductions_from ON matchmaking_introductions (from_org, created_at);
CREATE INDEX matchmaking_introductions_to ON matchmaking_introductions (to_org, seq DESC);
