-- One implementation of a registration, made for batches. The batch used to call
-- events_register() once per registration: a nested set-returning call per item, each
-- reading the event and moving the seat counters in their row. Now the batch takes the
-- event's lock, reads the event, its seats and whether it has categories once, decides
-- each registration in arrival order with the counters kept in memory, and writes the
-- counters once at the end; registrations are still inserted (ON CONFLICT on the active
-- registration of the same person) and their notices written one by one. Whatever fails
-- fails the whole transaction, counters included. events_register() is now this with
-- one item. p_unsafe: the race tests' switch (see docs/events.md): no lock, a decision
-- from a count of confirmed rows, the counters moved by each registration itself.
DROP FUNCTION events_register_batch(uuid, jsonb);
CREATE FUNCTION events_register_batch(p_event uuid, p_items jsonb, p_unsafe boolean DEFAULT false)
RETURNS TABLE (idx int, outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    it record;
    e events_events;
    st events_seats;
    v_categories boolean;
    v_moved boolean := false;
    c events_categories;
    prior events_registrations;
    r events_registrations;
    v_self boolean;
    v_confirm boolean;
    v_pos bigint;
    v_type text;
    v_data jsonb;
BEGIN
    -- Under the event's lock no one else changes its seats or settings (every writer
    -- takes it): what is read now holds for the whole batch.
    IF NOT p_unsafe THEN
        PERFORM pg_advisory_xact_lock(1163284052, hashtext(p_event::text)); -- events_lock
    END IF;
    SELECT * INTO e FROM events_events WHERE id = p_event;
    SELECT * INTO st FROM events_seats WHERE event_id = p_event;
    v_categories := EXISTS (SELECT 1 FROM events_categories WHERE event_id = p_event);
    FOR it IN SELECT * FROM jsonb_to_recordset(p_items) AS x(
                  i int, version int, caller uuid, caller_email text, admin boolean,
                  name text, email text, category text, answers jsonb, key text,
                  request text)
    LOOP
        idx := it.i;
        outcome := NULL;
        body := NULL;
        notices := NULL;
        v_self := lower(it.email) = lower(it.caller_email);
        -- An earlier answer for this Idempotency-Key. A twin request made meanwhile by
        -- another process meets the unique index, which the caller maps to the same.
        IF it.key IS NOT NULL THEN
            SELECT * INTO prior FROM events_registrations
             WHERE created_by = it.caller AND idempotency_key = it.key;
            IF FOUND THEN
                IF prior.event_id <> p_event
                   OR prior.request_hash IS DISTINCT FROM md5(it.request) THEN
                    outcome := 'key_reused';
                ELSE
                    outcome := 'replay';
                    body := prior.first_response;
                END IF;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        IF e.id IS NULL THEN
            outcome := 'not_found';
        ELSIF (e.status = 'draft' OR NOT v_self)
              AND NOT events_is_organiser(p_event, it.caller, coalesce(it.admin, false)) THEN
            outcome := CASE WHEN e.status = 'draft' THEN 'not_found' ELSE 'forbidden' END;
        ELSIF e.version <> it.version THEN
            outcome := 'stale';
        ELSIF e.status <> 'published' THEN
            outcome := 'not_open';
            body := jsonb_build_object('status', e.status);
        ELSIF e.registration_opens_at IS NOT NULL AND now() < e.registration_opens_at THEN
            outcome := 'not_yet';
            body := jsonb_build_object('at', events_ts(e.registration_opens_at));
        ELSIF now() >= coalesce(e.registration_closes_at, e.ends_at) THEN
            outcome := 'window_closed';
            body := jsonb_build_object('at',
                                       events_ts(coalesce(e.registration_closes_at, e.ends_at)));
        ELSIF it.category IS NULL AND v_categories THEN
            outcome := 'category_required';
        END IF;
        c := NULL;
        IF outcome IS NULL AND it.category IS NOT NULL THEN
            SELECT * INTO c FROM events_categories WHERE event_id = p_event AND name = it.category;
            IF NOT FOUND THEN
                outcome := 'bad_category';
            END IF;
        END IF;
        IF outcome IS NOT NULL THEN
            RETURN NEXT;
            CONTINUE;
        END IF;

        r := NULL;
        r.id := gen_random_uuid();
        r.event_id := p_event;
        IF v_self THEN
            r.user_id := it.caller;
            r.attendee_name := it.name;
            IF r.attendee_name IS NULL THEN
                SELECT nullif(u.display_name, '') INTO r.attendee_name FROM sp_users u
                 WHERE u.id = it.caller;
            END IF;
        ELSE
            SELECT u.id INTO r.user_id FROM sp_users u WHERE lower(u.email) = lower(it.email)
             LIMIT 1;
            r.attendee_name := it.name;
        END IF;
        r.attendee_name := coalesce(r.attendee_name, split_part(it.email, '@', 1));
        r.attendee_email := it.email;
        r.category := it.category;
        r.answers := coalesce(it.answers, '{}');
        r.checkin_code := upper(substr(replace(gen_random_uuid()::text, '-', ''), 1, 10));
        r.created_by := it.caller;
        r.idempotency_key := it.key;
        r.request_hash := CASE WHEN it.key IS NOT NULL THEN md5(it.request) END;

        IF p_unsafe THEN
            v_confirm := (SELECT count(*) FROM events_registrations
                           WHERE event_id = p_event AND status = 'confirmed') < e.capacity;
            -- Widens the window between the check and the write while seats seem to
            -- remain, so that a race shows the overbooking every time, not now and then.
            IF v_confirm THEN
                PERFORM pg_sleep(0.1);
            END IF;
            UPDATE events_seats SET next_seq = next_seq + 1,
                   waitlisted = waitlisted + (NOT v_confirm)::int
             WHERE event_id = p_event RETURNING next_seq, waitlisted INTO r.seq, v_pos;
        ELSE
            -- The capacity guard: a seat only while confirmed < capacity (and the quota).
            v_confirm := st.confirmed < st.capacity
                         AND (c.quota IS NULL OR c.confirmed < c.quota);
            r.seq := st.next_seq + 1;
            v_pos := st.waitlisted + 1;
        END IF;
        IF v_confirm THEN
            v_pos := NULL;
        END IF;
        r.status := CASE WHEN v_confirm THEN 'confirmed' ELSE 'waitlisted' END;
        r.created_at := now();
        r.confirmed_at := CASE WHEN v_confirm THEN now() END;
        IF it.key IS NOT NULL THEN
            r.first_response := events_reg_json(r, v_pos);
        END IF;

        -- One active registration per person and event: the unique index decides.
        INSERT INTO events_registrations SELECT r.*
            ON CONFLICT (event_id, lower(attendee_email)) WHERE status <> 'cancelled' DO NOTHING;
        IF NOT FOUND THEN
            SELECT * INTO prior FROM events_registrations
             WHERE event_id = p_event AND lower(attendee_email) = lower(it.email)
               AND status <> 'cancelled';
            outcome := 'duplicate';
            body := jsonb_build_object('id', prior.id, 'status', prior.status);
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF NOT p_unsafe THEN
            st.next_seq := r.seq;
            st.confirmed := st.confirmed + v_confirm::int;
            st.waitlisted := st.waitlisted + (NOT v_confirm)::int;
            v_moved := true;
            IF v_confirm AND c.name IS NOT NULL THEN
                UPDATE events_categories SET confirmed = confirmed + 1
                 WHERE event_id = p_event AND name = c.name;
            END IF;
        END IF;

        v_type := 'registration.' || r.status;
        v_data := jsonb_build_object('event_id', r.event_id, 'registration_id', r.id,
                                     'user_id', r.user_id, 'status', r.status,
                                     'category', r.category, 'waitlist_position', v_pos,
                                     'attendee_email', r.attendee_email,
                                     'attendee_name', r.attendee_name);
        INSERT INTO events_notices (type, event_id, registration_id, user_id, data)
        VALUES (v_type, p_event, r.id, r.user_id, v_data);
        outcome := 'created';
        body := events_reg_json(r, v_pos);
        notices := jsonb_build_array(jsonb_build_object('type', v_type, 'data', v_data));
        RETURN NEXT;
    END LOOP;
    IF v_moved THEN
        UPDATE events_seats SET next_seq = st.next_seq, confirmed = st.confirmed,
               waitlisted = st.waitlisted
         WHERE event_id = p_event;
    END IF;
END $$;

-- A registration on its own: a batch of one.
CREATE OR REPLACE FUNCTION events_register(p_event uuid, p_version int, p_caller uuid,
                                           p_caller_email text, p_admin boolean, p_name text,
                                           p_email text, p_category text, p_answers jsonb,
                                           p_key text, p_request text, p_unsafe boolean)
RETURNS TABLE (outcome text, body jsonb, notices jsonb) LANGUAGE sql AS $$
    SELECT b.outcome, b.body, b.notices
      FROM events_register_batch(p_event, jsonb_build_array(jsonb_build_object(
               'i', 0, 'version', p_version, 'caller', p_caller,
               'caller_email', p_caller_email, 'admin', p_admin, 'name', p_name,
               'email', p_email, 'category', p_category, 'answers', p_answers, 'key', p_key,
               'request', p_request)), p_unsafe) AS b
$$;
