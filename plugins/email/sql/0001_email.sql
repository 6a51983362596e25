-- email: the e-mails handed to the SMTP relay, one row per outbox row. A delivery job
-- that finds its row here has nothing left to do (a job run again after its lease
-- expired does not send twice when the first run got this far); message_id is the
-- Message-ID header, stable across retries, so receivers can deduplicate.
CREATE TABLE email_sent (
    outbox_id  uuid PRIMARY KEY REFERENCES sp_outbox (id) ON DELETE CASCADE,
    recipient  text NOT NULL,
    message_id text NOT NULL,
    attempts   integer NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now()
);
