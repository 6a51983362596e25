-- Delivery jobs made by the outbox trigger carry no dedupe key. One outbox row makes one
-- job (the trigger fires only for rows inserted, and each has its own id), so the key
-- guarded nothing; as an indexed column it cost every claim and every end of a delivery
-- job (never HOT updates: state and lease are indexed) one more index entry, in
-- sp_jobs_dedupe.
CREATE OR REPLACE FUNCTION sp_outbox_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sp_jobs (queue, payload)
    VALUES ('deliver.' || NEW.channel, jsonb_build_object('outbox_id', NEW.id));
    PERFORM pg_notify('sp_jobs', 'deliver.' || NEW.channel);
    RETURN NEW;
END $$;
