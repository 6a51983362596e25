-- The seat counters of each event move to a narrow row of their own. Every registration
-- moves them under the event's lock; as columns of the wide event row (texts, questions,
-- settings, five CHECK constraints, a GIN index on the topics) each such update cost
-- about 0.09 ms, the largest part of a registration's time under the lock in the
-- benchmark. capacity is copied here, kept equal by a trigger, so that
-- CHECK (confirmed <= capacity) stays a constraint of the row that changes: the last line
-- of defence of the capacity guard. The functions that read or move the counters are
-- replaced below; each is the previous version with the counters read from and written
-- to events_seats.
CREATE TABLE events_seats (
    event_id   uuid PRIMARY KEY REFERENCES events_events (id) ON DELETE CASCADE,
    capacity   integer NOT NULL,
    confirmed  integer NOT NULL DEFAULT 0,
    waitlisted integer NOT NULL DEFAULT 0,
    next_seq   bigint NOT NULL DEFAULT 0,
    CHECK (confirmed >= 0 AND confirmed <= capacity),
    CHECK (waitlisted >= 0)
);
INSERT INTO events_seats (event_id, capacity, confirmed, waitlisted, next_seq)
SELECT id, capacity, confirmed, waitlisted, next_seq FROM events_events;
ALTER TABLE events_events DROP COLUMN confirmed, DROP COLUMN waitlisted, DROP COLUMN next_seq;

-- A new event gets its seats; a new capacity is copied (events_update checked it
-- against the confirmed seats under the event's lock; the CHECK above enforces it).
CREATE FUNCTION events_seats_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO events_seats (event_id, capacity) VALUES (NEW.id, NEW.capacity);
    ELSIF NEW.capacity IS DISTINCT FROM OLD.capacity THEN
        UPDATE events_seats SET capacity = NEW.capacity WHERE event_id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER events_seats_sync AFTER INSERT OR UPDATE OF capacity ON events_events
    FOR EACH ROW EXECUTE FUNCTION events_seats_sync();

CREATE OR REPLACE FUNCTION events_event_json(e events_events) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', e.id, 'title', e.title, 'description', e.description, 'venue', e.venue,
        'online_url', e.online_url, 'starts_at', events_ts(e.starts_at),
        'ends_at', events_ts(e.ends_at), 'timezone', e.timezone, 'topics', to_jsonb(e.topics),
        'capacity', e.capacity,
        'registration_opens_at', events_ts(e.registration_opens_at),
        'registration_closes_at', events_ts(e.registration_closes_at),
        'categories', coalesce((SELECT jsonb_agg(jsonb_build_object('name', c.name,
                                                                    'quota', c.quota)
                                                 ORDER BY c.position)
                                FROM events_categories c WHERE c.event_id = e.id), '[]'),
        'questions', e.questions, 'settings', e.settings, 'status', e.status,
        'confirmed_count', coalesce(s.confirmed, 0), 'waitlist_count', coalesce(s.waitlisted, 0),
        'version', e.version, 'created_at', events_ts(e.created_at),
        'updated_at', events_ts(e.updated_at), 'published_at', events_ts(e.published_at),
        'closed_at', events_ts(e.closed_at))
      FROM (SELECT 1) one LEFT JOIN events_seats s ON s.event_id = e.id
$$;

CREATE OR REPLACE FUNCTION events_fill(p_event uuid) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
    st events_seats;
    w events_registrations;
    v_out jsonb := '[]';
BEGIN
    LOOP
        SELECT * INTO e FROM events_events WHERE id = p_event;
        EXIT WHEN NOT FOUND OR e.status <> 'published';
        SELECT * INTO st FROM events_seats WHERE event_id = p_event;
        EXIT WHEN st.confirmed >= st.capacity;
        SELECT r.* INTO w FROM events_registrations r
          LEFT JOIN events_categories c ON c.event_id = r.event_id AND c.name = r.category
         WHERE r.event_id = p_event AND r.status = 'waitlisted'
           AND (c.quota IS NULL OR c.confirmed < c.quota)
         ORDER BY r.seq LIMIT 1;
        EXIT WHEN NOT FOUND;
        UPDATE events_registrations SET status = 'confirmed', confirmed_at = now(),
               promoted_at = now()
         WHERE id = w.id RETURNING * INTO w;
        UPDATE events_seats SET confirmed = confirmed + 1, waitlisted = waitlisted - 1
         WHERE event_id = p_event;
        IF w.category IS NOT NULL THEN
            UPDATE events_categories SET confirmed = confirmed + 1
             WHERE event_id = p_event AND name = w.category;
        END IF;
        v_out := v_out || jsonb_build_array(events_reg_notice('registration.promoted', w, NULL));
    END LOOP;
    RETURN v_out;
END $$;

CREATE OR REPLACE FUNCTION events_register(p_event uuid, p_version int, p_caller uuid,
                                           p_caller_email text, p_admin boolean, p_name text,
                                           p_email text, p_category text, p_answers jsonb,
                                           p_key text, p_request text, p_unsafe boolean)
RETURNS TABLE (outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
    st events_seats;
    c events_categories;
    prior events_registrations;
    r events_registrations;
    v_self boolean := lower(p_email) = lower(p_caller_email);
    v_confirm boolean;
    v_pos bigint;
    v_type text;
    v_data jsonb;
BEGIN
    -- An earlier answer for this Idempotency-Key needs no lock. A twin request racing
    -- past it meets the unique index, which the caller maps to the same answer.
    IF p_key IS NOT NULL THEN
        SELECT * INTO prior FROM events_registrations
         WHERE created_by = p_caller AND idempotency_key = p_key;
        IF FOUND THEN
            IF prior.event_id <> p_event OR prior.request_hash IS DISTINCT FROM md5(p_request) THEN
                RETURN QUERY SELECT 'key_reused', NULL::jsonb, NULL::jsonb;
            ELSE
                RETURN QUERY SELECT 'replay', prior.first_response, NULL::jsonb;
            END IF;
            RETURN;
        END IF;
    END IF;
    r.id := gen_random_uuid();
    r.event_id := p_event;
    IF v_self THEN
        r.user_id := p_caller;
        r.attendee_name := p_name;
        IF r.attendee_name IS NULL THEN
            SELECT nullif(u.display_name, '') INTO r.attendee_name FROM sp_users u
             WHERE u.id = p_caller;
        END IF;
    ELSE
        SELECT u.id INTO r.user_id FROM sp_users u WHERE lower(u.email) = lower(p_email)
         LIMIT 1;
        r.attendee_name := p_name;
    END IF;
    r.attendee_name := coalesce(r.attendee_name, split_part(p_email, '@', 1));
    r.attendee_email := p_email;
    r.category := p_category;
    r.answers := coalesce(p_answers, '{}');
    r.checkin_code := upper(substr(replace(gen_random_uuid()::text, '-', ''), 1, 10));
    r.created_by := p_caller;
    r.idempotency_key := p_key;
    r.request_hash := CASE WHEN p_key IS NOT NULL THEN md5(p_request) END;

    -- Under the event's lock no one else changes its seats or settings (every writer
    -- takes it), so the row read now is the one the decision below may rely on.
    IF NOT p_unsafe THEN
        PERFORM pg_advisory_xact_lock(1163284052, hashtext(p_event::text)); -- events_lock
    END IF;
    SELECT * INTO e FROM events_events WHERE id = p_event;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF (e.status = 'draft' OR NOT v_self)
       AND NOT events_is_organiser(p_event, p_caller, p_admin) THEN
        RETURN QUERY SELECT CASE WHEN e.status = 'draft' THEN 'not_found' ELSE 'forbidden' END,
                            NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF e.version <> p_version THEN
        RETURN QUERY SELECT 'stale', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF e.status <> 'published' THEN
        RETURN QUERY SELECT 'not_open', jsonb_build_object('status', e.status), NULL::jsonb;
        RETURN;
    END IF;
    IF e.registration_opens_at IS NOT NULL AND now() < e.registration_opens_at THEN
        RETURN QUERY SELECT 'not_yet', jsonb_build_object('at', events_ts(e.registration_opens_at)),
                            NULL::jsonb;
        RETURN;
    END IF;
    IF now() >= coalesce(e.registration_closes_at, e.ends_at) THEN
        RETURN QUERY SELECT 'window_closed',
            jsonb_build_object('at', events_ts(coalesce(e.registration_closes_at, e.ends_at))),
            NULL::jsonb;
        RETURN;
    END IF;
    IF p_category IS NOT NULL THEN
        SELECT * INTO c FROM events_categories WHERE event_id = p_event AND name = p_category;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'bad_category', NULL::jsonb, NULL::jsonb;
            RETURN;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM events_categories WHERE event_id = p_event) THEN
        RETURN QUERY SELECT 'category_required', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;

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
        SELECT * INTO st FROM events_seats WHERE event_id = p_event;
        v_confirm := st.confirmed < st.capacity AND (c.quota IS NULL OR c.confirmed < c.quota);
        r.seq := st.next_seq + 1;
        v_pos := st.waitlisted + 1;
    END IF;
    IF v_confirm THEN
        v_pos := NULL;
    END IF;
    r.status := CASE WHEN v_confirm THEN 'confirmed' ELSE 'waitlisted' END;
    r.created_at := now();
    r.confirmed_at := CASE WHEN v_confirm THEN now() END;
    IF p_key IS NOT NULL THEN
        r.first_response := events_reg_json(r, v_pos);
    END IF;

    -- One active registration per person and event: the unique index decides.
    INSERT INTO events_registrations SELECT r.*
        ON CONFLICT (event_id, lower(attendee_email)) WHERE status <> 'cancelled' DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO prior FROM events_registrations
         WHERE event_id = p_event AND lower(attendee_email) = lower(p_email)
           AND status <> 'cancelled';
        RETURN QUERY SELECT 'duplicate', jsonb_build_object('id', prior.id, 'status', prior.status),
                            NULL::jsonb;
        RETURN;
    END IF;
    IF NOT p_unsafe THEN
        UPDATE events_seats SET next_seq = r.seq,
               confirmed = confirmed + v_confirm::int,
               waitlisted = waitlisted + (NOT v_confirm)::int
         WHERE event_id = p_event;
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
END $$;

CREATE OR REPLACE FUNCTION events_cancel(p_event uuid, p_reg uuid, p_caller uuid, p_admin boolean)
RETURNS TABLE (outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
    r events_registrations;
    v_org boolean;
    v_notices jsonb;
BEGIN
    PERFORM events_lock(p_event);
    SELECT * INTO e FROM events_events WHERE id = p_event FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    SELECT * INTO r FROM events_registrations WHERE id = p_reg AND event_id = p_event;
    v_org := events_is_organiser(p_event, p_caller, p_admin);
    IF r.id IS NULL OR NOT (v_org OR r.user_id IS NOT DISTINCT FROM p_caller) THEN
        RETURN QUERY SELECT 'not_found', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF r.status = 'cancelled' THEN
        RETURN QUERY SELECT 'unchanged', events_reg_json(r, NULL), NULL::jsonb;
        RETURN;
    END IF;
    IF e.status = 'closed' AND NOT v_org THEN
        RETURN QUERY SELECT 'closed', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF r.status = 'confirmed' THEN
        UPDATE events_seats SET confirmed = confirmed - 1 WHERE event_id = p_event;
        IF r.category IS NOT NULL THEN
            UPDATE events_categories SET confirmed = confirmed - 1
             WHERE event_id = p_event AND name = r.category;
        END IF;
    ELSE
        UPDATE events_seats SET waitlisted = waitlisted - 1 WHERE event_id = p_event;
    END IF;
    UPDATE events_registrations SET status = 'cancelled', cancelled_at = now(),
           cancelled_by = p_caller
     WHERE id = p_reg RETURNING * INTO r;
    v_notices := jsonb_build_array(events_reg_notice('registration.cancelled', r, NULL));
    v_notices := v_notices || events_fill(p_event);
    RETURN QUERY SELECT 'cancelled', events_reg_json(r, NULL), v_notices;
END $$;

CREATE OR REPLACE FUNCTION events_update(p_event uuid, p_caller uuid, p_admin boolean, p_version int,
                              p jsonb)
RETURNS TABLE (outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
    st events_seats;
    v_errors jsonb;
    v_row record;
    v_notices jsonb;
BEGIN
    PERFORM events_lock(p_event);
    SELECT * INTO e FROM events_events WHERE id = p_event FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF NOT events_is_organiser(p_event, p_caller, p_admin) THEN
        RETURN QUERY SELECT CASE WHEN e.status = 'draft' THEN 'not_found' ELSE 'forbidden' END,
                            NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF e.version <> p_version THEN
        RETURN QUERY SELECT 'conflict', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    v_errors := events_check_refs(p);
    IF v_errors IS NOT NULL THEN
        RETURN QUERY SELECT 'invalid', v_errors, NULL::jsonb;
        RETURN;
    END IF;
    SELECT * INTO st FROM events_seats WHERE event_id = p_event;
    IF (p->>'capacity')::int < st.confirmed THEN
        RETURN QUERY SELECT 'capacity_below',
            jsonb_build_object('capacity', (p->>'capacity')::int, 'confirmed', st.confirmed),
            NULL::jsonb;
        RETURN;
    END IF;
    -- Categories that go away must hold no active registration.
    FOR v_row IN
        SELECT c.name, (SELECT count(*) FROM events_registrations r
                         WHERE r.event_id = p_event AND r.category = c.name
                           AND r.status <> 'cancelled') AS n
          FROM events_categories c
         WHERE c.event_id = p_event
           AND c.name NOT IN (SELECT x->>'name'
                                FROM jsonb_array_elements(coalesce(p->'categories', '[]')) x)
    LOOP
        IF v_row.n > 0 THEN
            RETURN QUERY SELECT 'category_in_use',
                jsonb_build_object('name', v_row.name, 'registrations', v_row.n), NULL::jsonb;
            RETURN;
        END IF;
    END LOOP;
    -- Quotas cannot go below the seats their category already holds.
    FOR v_row IN
        SELECT c.name, c.confirmed, (x->>'quota')::int AS quota
          FROM jsonb_array_elements(coalesce(p->'categories', '[]')) x
          JOIN events_categories c ON c.event_id = p_event AND c.name = x->>'name'
         WHERE x->>'quota' IS NOT NULL AND (x->>'quota')::int < c.confirmed
    LOOP
        RETURN QUERY SELECT 'quota_below',
            jsonb_build_object('name', v_row.name, 'quota', v_row.quota,
                               'confirmed', v_row.confirmed), NULL::jsonb;
        RETURN;
    END LOOP;
    UPDATE events_events SET
        title = p->>'title', description = coalesce(p->>'description', ''),
        venue = p->>'venue', online_url = p->>'online_url',
        starts_at = (p->>'starts_at')::timestamptz, ends_at = (p->>'ends_at')::timestamptz,
        timezone = p->>'timezone',
        topics = ARRAY(SELECT jsonb_array_elements_text(coalesce(p->'topics', '[]'))),
        capacity = (p->>'capacity')::int,
        registration_opens_at = (p->>'registration_opens_at')::timestamptz,
        registration_closes_at = (p->>'registration_closes_at')::timestamptz,
        questions = coalesce(p->'questions', '[]'), settings = coalesce(p->'settings', '{}'),
        version = version + 1, updated_at = now()
     WHERE id = p_event;
    DELETE FROM events_categories
     WHERE event_id = p_event
       AND name NOT IN (SELECT x->>'name'
                          FROM jsonb_array_elements(coalesce(p->'categories', '[]')) x);
    INSERT INTO events_categories (event_id, name, quota, position)
    SELECT p_event, x->>'name', (x->>'quota')::int, o
      FROM jsonb_array_elements(coalesce(p->'categories', '[]')) WITH ORDINALITY AS t(x, o)
    ON CONFLICT (event_id, name) DO UPDATE SET quota = EXCLUDED.quota,
                                               position = EXCLUDED.position;
    v_notices := jsonb_build_array(jsonb_build_object('type', 'event.updated',
                     'data', jsonb_build_object('event_id', p_event)));
    v_notices := v_notices || events_fill(p_event);
    SELECT * INTO e FROM events_events WHERE id = p_event;
    RETURN QUERY SELECT 'updated', events_event_json(e), v_notices;
END $$;

CREATE OR REPLACE FUNCTION events_delete(p_event uuid, p_caller uuid, p_admin boolean)
RETURNS TABLE (outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
    st events_seats;
BEGIN
    PERFORM events_lock(p_event);
    SELECT * INTO e FROM events_events WHERE id = p_event FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF NOT events_is_organiser(p_event, p_caller, p_admin) THEN
        RETURN QUERY SELECT CASE WHEN e.status = 'draft' THEN 'not_found' ELSE 'forbidden' END,
                            NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    SELECT * INTO st FROM events_seats WHERE event_id = p_event;
    IF st.confirmed + st.waitlisted > 0 THEN
        RETURN QUERY SELECT 'in_use', jsonb_build_object('confirmed', st.confirmed,
                                                         'waitlisted', st.waitlisted), NULL::jsonb;
        RETURN;
    END IF;
    DELETE FROM events_events WHERE id = p_event;
    RETURN QUERY SELECT 'deleted', NULL::jsonb,
        jsonb_build_array(jsonb_build_object('type', 'event.deleted',
                                             'data', jsonb_build_object('event_id', p_event)));
END $$;
