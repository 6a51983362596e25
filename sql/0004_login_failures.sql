-- Failed logins per account and per client address in a sliding window, shared by all
-- instances, so throttling holds behind a load balancer.
CREATE TABLE sp_login_failures (
    key          text PRIMARY KEY,
    failures     integer NOT NULL,
    window_start timestamptz NOT NULL
);
