-- Registrations of one event arriving together are registered together: one statement,
-- one transaction, the event's lock taken once for all of them (each process keeps one
-- such batch per event in flight, see registration_routes.c). Each item is decided
-- exactly as a registration on its own, by events_register(), in arrival order; the
-- lock is re-entrant within the transaction. Items: a JSON array of objects {i (the
-- caller's index), version, caller, caller_email, admin, name, email, category,
-- answers, key, request}. A statement error (a unique index meeting a twin request
-- from another process) fails the whole batch: the caller then registers its items
-- one by one, the way a lone registration would be retried.
CREATE FUNCTION events_register_batch(p_event uuid, p_items jsonb)
RETURNS TABLE (idx int, outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    it record;
BEGIN
    PERFORM events_lock(p_event);
    FOR it IN SELECT * FROM jsonb_to_recordset(p_items) AS x(
                  i int, version int, caller uuid, caller_email text, admin boolean,
                  name text, email text, category text, answers jsonb, key text,
                  request text)
    LOOP
        RETURN QUERY
            SELECT it.i, r.outcome, r.body, r.notices
              FROM events_register(p_event, it.version, it.caller, it.caller_email,
                                   coalesce(it.admin, false), it.name, it.email, it.category,
                                   it.answers, it.key, it.request, false) AS r;
    END LOOP;
END $$;
