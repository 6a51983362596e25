-- Webhook endpoints registered by organisations, and the log of delivery attempts.
-- The secret must stay readable (it keys the HMAC of every delivery); the API shows it
-- only when it is made. During a rotation the previous secret signs too, until
-- previous_secret_expires_at.
CREATE TABLE webhook_endpoints (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id          uuid NOT NULL REFERENCES sp_organizations (id) ON DELETE CASCADE,
    url             text NOT NULL CHECK (length(url) BETWEEN 8 AND 2000),
    events          text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 50),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    enabled         boolean NOT NULL DEFAULT true,
    disabled_reason text,
    secret          text NOT NULL,
    previous_secret text,
    previous_secret_expires_at timestamptz,
    created_by      uuid REFERENCES sp_users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id, created_at, id);
CREATE INDEX webhook_endpoints_list ON webhook_endpoints (created_at, id);

-- One row per attempt (and per test ping). event_id is the sp_outbox id: the same in
-- every attempt, and the webhook-id header receivers de-duplicate on.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    attempt         integer NOT NULL CHECK (attempt > 0),
    job_id          bigint,
    outcome         text NOT NULL
                    CHECK (outcome IN ('delivered', 'retrying', 'failed', 'disabled', 'refused')),
    status_code     integer,
    error           text,
    response        text,
    duration_ms     integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id DESC);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
