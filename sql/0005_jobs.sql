-- Durable jobs: claimed with FOR UPDATE SKIP LOCKED under a lease, so several
-- instances share the work and a job whose worker died runs again once its lease
-- expires. NOTIFY sp_jobs only wakes workers up; they also poll.
CREATE TABLE sp_jobs (
    id           bigserial PRIMARY KEY,
    queue        text NOT NULL CHECK (queue ~ '^[a-z0-9_.]+$'),
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    dedupe_key   text,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'done', 'dead')),
    run_at       timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 12 CHECK (max_attempts > 0),
    locked_until timestamptz,
    locked_by    text,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX sp_jobs_dedupe ON sp_jobs (queue, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX sp_jobs_ready ON sp_jobs (queue, run_at) WHERE state IN ('pending', 'running');
CREATE INDEX sp_jobs_dead ON sp_jobs (queue, updated_at) WHERE state = 'dead';

-- The notification outbox: written in the same transaction as its cause, one row per
-- recipient and channel (the dedupe key makes enqueueing twice create one row), and a
-- delivery job created with it by the trigger below.
CREATE TABLE sp_outbox (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(), -- the stable event id
    type       text NOT NULL CHECK (type ~ '^[a-z0-9_.]+$'),
    channel    text NOT NULL CHECK (channel ~ '^[a-z0-9_]+$'),
    user_id    uuid REFERENCES sp_users (id) ON DELETE CASCADE,
    org_id     uuid REFERENCES sp_organizations (id) ON DELETE CASCADE,
    dedupe_key text NOT NULL,
    title      text NOT NULL DEFAULT '',
    body       text NOT NULL DEFAULT '',
    data       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (user_id IS NOT NULL OR org_id IS NOT NULL)
);
CREATE UNIQUE INDEX sp_outbox_dedupe ON sp_outbox
    (dedupe_key, channel, coalesce(user_id, '00000000-0000-0000-0000-000000000000'::uuid),
     coalesce(org_id, '00000000-0000-0000-0000-000000000000'::uuid));
CREATE INDEX sp_outbox_user ON sp_outbox (user_id, created_at DESC);

CREATE FUNCTION sp_outbox_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sp_jobs (queue, payload, dedupe_key)
    VALUES ('deliver.' || NEW.channel, jsonb_build_object('outbox_id', NEW.id), NEW.id::text);
    PERFORM pg_notify('sp_jobs', 'deliver.' || NEW.channel);
    RETURN NEW;
END $$;
CREATE TRIGGER sp_outbox_enqueue AFTER INSERT ON sp_outbox
    FOR EACH ROW EXECUTE FUNCTION sp_outbox_enqueue();
