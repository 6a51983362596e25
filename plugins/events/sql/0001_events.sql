-- Events plugin: events, organiser grants, registration categories with quotas,
-- registrations with a waiting list and check-in, and a durable record of every
-- notice sent about them.
--
-- The seat invariant. Every statement that changes who holds a seat (register,
-- cancel, capacity or quota changes, promotion) or the event itself first takes the
-- event's lock (events_lock: a transaction-level advisory lock, on which waiters queue
-- and each gives up after lock_timeout); all but the hot registration path also lock
-- the event row (SELECT ... FOR UPDATE). Each keeps the counters on events_events
-- (confirmed, waitlisted) and events_categories (confirmed) in step with the rows. Changes to one event are
-- therefore serialised, across every instance, and each decision is taken on the
-- latest committed counts; CHECK constraints refuse any counter above its capacity or
-- quota as a last line of defence. Each function below runs as one statement (one
-- round trip, autocommit): the locks are held for a fraction of a millisecond.

CREATE TABLE events_events (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title                  text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description            text NOT NULL DEFAULT '' CHECK (length(description) <= 20000),
    venue                  text CHECK (length(venue) BETWEEN 1 AND 500),
    online_url             text CHECK (length(online_url) BETWEEN 1 AND 2000),
    starts_at              timestamptz NOT NULL,
    ends_at                timestamptz NOT NULL,
    timezone               text NOT NULL DEFAULT 'UTC' CHECK (length(timezone) BETWEEN 1 AND 64),
    topics                 text[] NOT NULL DEFAULT '{}',
    capacity               integer NOT NULL CHECK (capacity BETWEEN 0 AND 1000000),
    registration_opens_at  timestamptz,
    registration_closes_at timestamptz,
    questions              jsonb NOT NULL DEFAULT '[]',
    settings               jsonb NOT NULL DEFAULT '{}',
    status                 text NOT NULL DEFAULT 'draft'
                           CHECK (status IN ('draft', 'published', 'closed')),
    confirmed              integer NOT NULL DEFAULT 0,
    waitlisted             integer NOT NULL DEFAULT 0 CHECK (waitlisted >= 0),
    next_seq               bigint NOT NULL DEFAULT 0,
    version                integer NOT NULL DEFAULT 1,
    created_by             uuid REFERENCES sp_users (id) ON DELETE SET NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    published_at           timestamptz,
    closed_at              timestamptz,
    CHECK (ends_at > starts_at),
    CHECK (venue IS NOT NULL OR online_url IS NOT NULL),
    CHECK (registration_opens_at IS NULL OR registration_closes_at IS NULL
           OR registration_closes_at > registration_opens_at),
    CHECK (confirmed >= 0 AND confirmed <= capacity)
);
CREATE INDEX events_events_page ON events_events (starts_at, id);
CREATE INDEX events_events_topics ON events_events USING gin (topics);

CREATE TABLE events_categories (
    event_id  uuid NOT NULL REFERENCES events_events (id) ON DELETE CASCADE,
    name      text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    quota     integer CHECK (quota BETWEEN 0 AND 1000000),
    position  integer NOT NULL,
    confirmed integer NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, name),
    CHECK (confirmed >= 0 AND (quota IS NULL OR confirmed <= quota))
);

-- Who may run an event. Holding any grant also lets a member create events.
CREATE TABLE events_organisers (
    event_id   uuid NOT NULL REFERENCES events_events (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES sp_users (id) ON DELETE CASCADE,
    granted_by uuid REFERENCES sp_users (id) ON DELETE SET NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, user_id)
);
CREATE INDEX events_organisers_user ON events_organisers (user_id);

CREATE TABLE events_registrations (
    id              uuid PRIMARY KEY,
    event_id        uuid NOT NULL REFERENCES events_events (id) ON DELETE CASCADE,
    seq             bigint NOT NULL, -- order of arrival within the event
    user_id         uuid REFERENCES sp_users (id) ON DELETE SET NULL,
    attendee_name   text NOT NULL CHECK (length(attendee_name) BETWEEN 1 AND 200),
    attendee_email  text NOT NULL CHECK (length(attendee_email) BETWEEN 3 AND 254),
    category        text,
    answers         jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL CHECK (status IN ('confirmed', 'waitlisted', 'cancelled')),
    checkin_code    text NOT NULL,
    checked_in_at   timestamptz,
    checked_in_by   uuid,
    created_by      uuid,
    idempotency_key text,
    request_hash    text,
    first_response  jsonb, -- the answer given to the first request, for replays
    created_at      timestamptz NOT NULL,
    confirmed_at    timestamptz,
    promoted_at     timestamptz,
    cancelled_at    timestamptz,
    cancelled_by    uuid,
    UNIQUE (event_id, seq),
    UNIQUE (event_id, checkin_code)
);
-- One registration per caller and Idempotency-Key.
CREATE UNIQUE INDEX events_registrations_key ON events_registrations
    (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- One active registration per person (e-mail) and event.
CREATE UNIQUE INDEX events_registrations_person ON events_registrations
    (event_id, lower(attendee_email)) WHERE status <> 'cancelled';
CREATE INDEX events_registrations_waitlist ON events_registrations (event_id, seq)
    WHERE status = 'waitlisted';
CREATE INDEX events_registrations_user ON events_registrations (user_id, created_at, id);

-- Every notice about a registration or an event, written in the same transaction as
-- the change it announces. The bus events are sent from these after the commit; a
-- relay then hands them to the core's notification outbox (relayed_at set in the same
-- transaction as the outbox rows), so each is notified once even if a process dies.
CREATE TABLE events_notices (
    id              bigserial PRIMARY KEY,
    type            text NOT NULL,
    event_id        uuid NOT NULL,
    registration_id uuid,
    user_id         uuid,
    data            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    relayed_at      timestamptz
);
CREATE INDEX events_notices_registration ON events_notices (registration_id);
CREATE INDEX events_notices_pending ON events_notices (id) WHERE relayed_at IS NULL;
-- A person leaves the waiting list once: one promotion notice per registration.
CREATE UNIQUE INDEX events_notices_promoted ON events_notices (registration_id)
    WHERE type = 'registration.promoted';

-- Time zone names already found in pg_timezone_names.
CREATE TABLE events_timezones (name text PRIMARY KEY);

-- ---- representations ----

CREATE FUNCTION events_ts(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

CREATE FUNCTION events_event_json(e events_events) RETURNS jsonb LANGUAGE sql STABLE AS $$
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
        'confirmed_count', e.confirmed, 'waitlist_count', e.waitlisted,
        'version', e.version, 'created_at', events_ts(e.created_at),
        'updated_at', events_ts(e.updated_at), 'published_at', events_ts(e.published_at),
        'closed_at', events_ts(e.closed_at))
$$;

CREATE FUNCTION events_reg_json(r events_registrations, pos bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'event_id', r.event_id, 'status', r.status,
        'waitlist_position', CASE WHEN r.status = 'waitlisted' THEN pos END,
        'category', r.category,
        'attendee', jsonb_build_object('name', r.attendee_name, 'email', r.attendee_email),
        'answers', r.answers, 'checkin_code', r.checkin_code,
        'checked_in_at', events_ts(r.checked_in_at), 'created_at', events_ts(r.created_at),
        'promoted_at', events_ts(r.promoted_at), 'cancelled_at', events_ts(r.cancelled_at))
$$;

-- Position on the waiting list (1 = next in line), NULL when not waitlisted.
CREATE FUNCTION events_waitlist_position(r events_registrations) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN r.status = 'waitlisted' THEN
        (SELECT count(*) FROM events_registrations w
          WHERE w.event_id = r.event_id AND w.status = 'waitlisted' AND w.seq <= r.seq) END
$$;

CREATE FUNCTION events_is_organiser(p_event uuid, p_user uuid, p_admin boolean) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT p_admin OR EXISTS (SELECT 1 FROM events_organisers o
                               WHERE o.event_id = p_event AND o.user_id = p_user)
$$;

CREATE FUNCTION events_notice(p_type text, p_event uuid, p_reg uuid, p_user uuid, p_data jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_notices (type, event_id, registration_id, user_id, data)
    VALUES (p_type, p_event, p_reg, p_user, p_data);
    RETURN jsonb_build_object('type', p_type, 'data', p_data);
END $$;

CREATE FUNCTION events_reg_notice(p_type text, r events_registrations, pos bigint) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT events_notice(p_type, r.event_id, r.id, r.user_id,
        jsonb_build_object('event_id', r.event_id, 'registration_id', r.id,
                           'user_id', r.user_id, 'status', r.status, 'category', r.category,
                           'waitlist_position', pos, 'attendee_email', r.attendee_email,
                           'attendee_name', r.attendee_name))
$$;

-- ---- the event's lock ----

-- Serialises the seat changes of one event. An advisory lock rather than the row lock
-- alone: waiters on a row lock queue on a tuple lock first and then on the holder's
-- transaction, two waits that can each last lock_timeout; here there is one.
CREATE FUNCTION events_lock(p_event uuid) RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(1163284052, hashtext(p_event::text))
$$;

-- ---- the waiting list ----

-- Promotes waitlisted people, first come first served, as long as the event has a
-- seat and their category room. The caller holds the event lock. Returns the notices.
CREATE FUNCTION events_fill(p_event uuid) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
    w events_registrations;
    v_out jsonb := '[]';
BEGIN
    LOOP
        SELECT * INTO e FROM events_events WHERE id = p_event;
        EXIT WHEN NOT FOUND OR e.status <> 'published' OR e.confirmed >= e.capacity;
        SELECT r.* INTO w FROM events_registrations r
          LEFT JOIN events_categories c ON c.event_id = r.event_id AND c.name = r.category
         WHERE r.event_id = p_event AND r.status = 'waitlisted'
           AND (c.quota IS NULL OR c.confirmed < c.quota)
         ORDER BY r.seq LIMIT 1;
        EXIT WHEN NOT FOUND;
        UPDATE events_registrations SET status = 'confirmed', confirmed_at = now(),
               promoted_at = now()
         WHERE id = w.id RETURNING * INTO w;
        UPDATE events_events SET confirmed = confirmed + 1, waitlisted = waitlisted - 1
         WHERE id = p_event;
        IF w.category IS NOT NULL THEN
            UPDATE events_categories SET confirmed = confirmed + 1
             WHERE event_id = p_event AND name = w.category;
        END IF;
        v_out := v_out || jsonb_build_array(events_reg_notice('registration.promoted', w, NULL));
    END LOOP;
    RETURN v_out;
END $$;

-- ---- registration ----

-- Registers one person: p_email (the caller's own p_caller_email when the request
-- named no attendee), under the name p_name or else a default. p_version is the
-- version of the event whose questions and categories the caller checked the request
-- against. Outcomes: created (body = the registration), replay (body = the first answer
-- given for this Idempotency-Key), key_reused, not_found, forbidden (someone else,
-- without being an organiser), stale (the event changed since p_version: check again),
-- not_open, not_yet, window_closed, duplicate, bad_category, category_required.
-- p_unsafe (tests only, see docs/events.md) decides without the lock, from a count
-- that concurrent registrations have not committed yet: it overbooks under load, which
-- is how the race tests prove they can fail.
CREATE FUNCTION events_register(p_event uuid, p_version int, p_caller uuid,
                                p_caller_email text, p_admin boolean, p_name text,
                                p_email text, p_category text, p_answers jsonb, p_key text,
                                p_request text, p_unsafe boolean)
RETURNS TABLE (outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
    c events_categories;
    prior events_registrations;
    r events_registrations;
    v_self boolean := lower(p_email) = lower(p_caller_email);
    v_confirm boolean;
    v_pos bigint;
BEGIN
    -- Checks that need no lock come first, to keep the lock short. A twin request
    -- (same Idempotency-Key) or a duplicate person racing past them meets the unique
    -- indexes, which the caller maps to the same answers.
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
    SELECT * INTO prior FROM events_registrations
     WHERE event_id = p_event AND lower(attendee_email) = lower(p_email) AND status <> 'cancelled';
    IF FOUND THEN
        RETURN QUERY SELECT 'duplicate', jsonb_build_object('id', prior.id, 'status', prior.status),
                            NULL::jsonb;
        RETURN;
    END IF;
    r.id := gen_random_uuid();
    r.event_id := p_event;
    r.user_id := CASE WHEN v_self THEN p_caller
                      ELSE (SELECT u.id FROM sp_users u WHERE lower(u.email) = lower(p_email)
                             LIMIT 1) END;
    r.attendee_name := coalesce(p_name,
        CASE WHEN v_self THEN (SELECT nullif(u.display_name, '') FROM sp_users u
                                WHERE u.id = p_caller) END,
        split_part(p_email, '@', 1));
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
        PERFORM events_lock(p_event);
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
        UPDATE events_events SET next_seq = next_seq + 1,
               waitlisted = waitlisted + (NOT v_confirm)::int
         WHERE id = p_event RETURNING next_seq, waitlisted INTO r.seq, v_pos;
    ELSE
        -- The capacity guard: a seat only while confirmed < capacity (and the quota).
        v_confirm := e.confirmed < e.capacity AND (c.quota IS NULL OR c.confirmed < c.quota);
        UPDATE events_events SET next_seq = next_seq + 1,
               confirmed = confirmed + v_confirm::int,
               waitlisted = waitlisted + (NOT v_confirm)::int
         WHERE id = p_event RETURNING next_seq, waitlisted INTO r.seq, v_pos;
        IF v_confirm AND c.name IS NOT NULL THEN
            UPDATE events_categories SET confirmed = confirmed + 1
             WHERE event_id = p_event AND name = c.name;
        END IF;
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
    INSERT INTO events_registrations SELECT r.*;
    RETURN QUERY SELECT 'created', events_reg_json(r, v_pos),
        jsonb_build_array(events_reg_notice('registration.' || r.status, r, v_pos));
END $$;

-- Cancels a registration (its attendee, or an organiser) and promotes from the waiting
-- list in the same transaction. Outcomes: cancelled, unchanged (already cancelled),
-- not_found, closed.
CREATE FUNCTION events_cancel(p_event uuid, p_reg uuid, p_caller uuid, p_admin boolean)
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
        UPDATE events_events SET confirmed = confirmed - 1 WHERE id = p_event;
        IF r.category IS NOT NULL THEN
            UPDATE events_categories SET confirmed = confirmed - 1
             WHERE event_id = p_event AND name = r.category;
        END IF;
    ELSE
        UPDATE events_events SET waitlisted = waitlisted - 1 WHERE id = p_event;
    END IF;
    UPDATE events_registrations SET status = 'cancelled', cancelled_at = now(),
           cancelled_by = p_caller
     WHERE id = p_reg RETURNING * INTO r;
    v_notices := jsonb_build_array(events_reg_notice('registration.cancelled', r, NULL));
    v_notices := v_notices || events_fill(p_event);
    RETURN QUERY SELECT 'cancelled', events_reg_json(r, NULL), v_notices;
END $$;

-- Records a check-in by registration id and/or code. Outcomes: checked_in, already
-- (body.checked_in_at = the first time), not_found, code_mismatch, not_confirmed,
-- forbidden, not_open.
CREATE FUNCTION events_checkin(p_event uuid, p_reg uuid, p_code text, p_caller uuid,
                               p_admin boolean)
RETURNS TABLE (outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
    r events_registrations;
BEGIN
    SELECT * INTO e FROM events_events WHERE id = p_event;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF NOT events_is_organiser(p_event, p_caller, p_admin) THEN
        RETURN QUERY SELECT CASE WHEN e.status = 'draft' THEN 'not_found' ELSE 'forbidden' END,
                            NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF e.status = 'draft' THEN
        RETURN QUERY SELECT 'not_open', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    UPDATE events_registrations SET checked_in_at = clock_timestamp(), checked_in_by = p_caller
     WHERE event_id = p_event AND (p_reg IS NULL OR id = p_reg)
       AND (p_code IS NULL OR checkin_code = p_code)
       AND status = 'confirmed' AND checked_in_at IS NULL
    RETURNING * INTO r;
    IF FOUND THEN
        RETURN QUERY SELECT 'checked_in', events_reg_json(r, NULL),
            jsonb_build_array(events_notice('checkin.recorded', p_event, r.id, r.user_id,
                jsonb_build_object('event_id', p_event, 'registration_id', r.id,
                                   'user_id', r.user_id, 'checked_in_at',
                                   events_ts(r.checked_in_at), 'checked_in_by', p_caller)));
        RETURN;
    END IF;
    SELECT * INTO r FROM events_registrations
     WHERE event_id = p_event AND (p_reg IS NULL OR id = p_reg)
       AND (p_code IS NULL OR checkin_code = p_code);
    IF NOT FOUND THEN
        IF p_reg IS NOT NULL AND p_code IS NOT NULL AND EXISTS (
            SELECT 1 FROM events_registrations WHERE id = p_reg AND event_id = p_event) THEN
            RETURN QUERY SELECT 'code_mismatch', NULL::jsonb, NULL::jsonb;
        ELSE
            RETURN QUERY SELECT 'not_found', NULL::jsonb, NULL::jsonb;
        END IF;
        RETURN;
    END IF;
    IF r.status <> 'confirmed' THEN
        RETURN QUERY SELECT 'not_confirmed', events_reg_json(r, events_waitlist_position(r)),
                            NULL::jsonb;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'already', events_reg_json(r, NULL), NULL::jsonb;
END $$;

-- ---- events ----

-- Problems only the database can see in an event document: unknown topics, an unknown
-- time zone. NULL when there are none, else an object field → message.
CREATE FUNCTION events_check_refs(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_errors jsonb := '{}';
    v_unknown text;
BEGIN
    SELECT string_agg(t, ', ' ORDER BY t) INTO v_unknown
      FROM jsonb_array_elements_text(coalesce(p->'topics', '[]')) AS t
     WHERE NOT EXISTS (SELECT 1 FROM sp_topics s WHERE s.slug = t);
    IF v_unknown IS NOT NULL THEN
        v_errors := v_errors || jsonb_build_object('topics', 'unknown topics: ' || v_unknown);
    END IF;
    -- pg_timezone_names reads the whole zone database (tens of ms): remember the
    -- names found there.
    IF NOT EXISTS (SELECT 1 FROM events_timezones WHERE name = p->>'timezone') THEN
        IF EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p->>'timezone') THEN
            INSERT INTO events_timezones (name) VALUES (p->>'timezone') ON CONFLICT DO NOTHING;
        ELSE
            v_errors := v_errors || jsonb_build_object('timezone',
                'is not a time zone name of the IANA database (e.g. Europe/Paris)');
        END IF;
    END IF;
    RETURN CASE WHEN v_errors = '{}' THEN NULL ELSE v_errors END;
END $$;

-- Creates an event from a validated document; the creator becomes its organiser.
-- Outcomes: created, forbidden, invalid (body = errors).
CREATE FUNCTION events_create(p_caller uuid, p_admin boolean, p jsonb)
RETURNS TABLE (outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
    v_errors jsonb;
    v_notices jsonb := '[]';
BEGIN
    IF NOT p_admin AND NOT EXISTS (SELECT 1 FROM events_organisers WHERE user_id = p_caller) THEN
        RETURN QUERY SELECT 'forbidden', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    v_errors := events_check_refs(p);
    IF v_errors IS NOT NULL THEN
        RETURN QUERY SELECT 'invalid', v_errors, NULL::jsonb;
        RETURN;
    END IF;
    INSERT INTO events_events (title, description, venue, online_url, starts_at, ends_at,
                               timezone, topics, capacity, registration_opens_at,
                               registration_closes_at, questions, settings, status,
                               created_by, published_at)
    VALUES (p->>'title', coalesce(p->>'description', ''), p->>'venue', p->>'online_url',
            (p->>'starts_at')::timestamptz, (p->>'ends_at')::timestamptz, p->>'timezone',
            ARRAY(SELECT jsonb_array_elements_text(coalesce(p->'topics', '[]'))),
            (p->>'capacity')::int, (p->>'registration_opens_at')::timestamptz,
            (p->>'registration_closes_at')::timestamptz, coalesce(p->'questions', '[]'),
            coalesce(p->'settings', '{}'), p->>'status', p_caller,
            CASE WHEN p->>'status' = 'published' THEN now() END)
    RETURNING * INTO e;
    INSERT INTO events_categories (event_id, name, quota, position)
    SELECT e.id, x->>'name', (x->>'quota')::int, o
      FROM jsonb_array_elements(coalesce(p->'categories', '[]')) WITH ORDINALITY AS t(x, o);
    IF p_caller IS NOT NULL THEN
        INSERT INTO events_organisers (event_id, user_id, granted_by)
        VALUES (e.id, p_caller, p_caller);
    END IF;
    IF e.status = 'published' THEN
        v_notices := jsonb_build_array(events_notice('event.published', e.id, NULL, NULL,
            jsonb_build_object('event_id', e.id, 'title', e.title,
                               'starts_at', events_ts(e.starts_at), 'topics', to_jsonb(e.topics))));
    END IF;
    RETURN QUERY SELECT 'created', events_event_json(e), v_notices;
END $$;

-- Replaces the writable fields of an event with a validated document, read at version
-- p_version (optimistic: conflict when someone changed it meanwhile). Outcomes:
-- updated, not_found, forbidden, conflict, invalid, capacity_below, quota_below,
-- category_in_use (body says which and the numbers).
CREATE FUNCTION events_update(p_event uuid, p_caller uuid, p_admin boolean, p_version int,
                              p jsonb)
RETURNS TABLE (outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
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
    IF (p->>'capacity')::int < e.confirmed THEN
        RETURN QUERY SELECT 'capacity_below',
            jsonb_build_object('capacity', (p->>'capacity')::int, 'confirmed', e.confirmed),
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

-- draft → published → closed. Outcomes: done, not_found, forbidden, bad_state.
CREATE FUNCTION events_transition(p_event uuid, p_caller uuid, p_admin boolean, p_to text)
RETURNS TABLE (outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
    v_notices jsonb := '[]';
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
    IF (p_to = 'published' AND e.status <> 'draft') OR (p_to = 'closed' AND e.status <> 'published') THEN
        RETURN QUERY SELECT 'bad_state', jsonb_build_object('status', e.status), NULL::jsonb;
        RETURN;
    END IF;
    UPDATE events_events SET status = p_to, version = version + 1, updated_at = now(),
           published_at = CASE WHEN p_to = 'published' THEN now() ELSE published_at END,
           closed_at = CASE WHEN p_to = 'closed' THEN now() ELSE closed_at END
     WHERE id = p_event RETURNING * INTO e;
    v_notices := jsonb_build_array(events_notice('event.' || p_to, e.id, NULL, NULL,
        jsonb_build_object('event_id', e.id, 'title', e.title,
                           'starts_at', events_ts(e.starts_at), 'topics', to_jsonb(e.topics))));
    RETURN QUERY SELECT 'done', events_event_json(e), v_notices;
END $$;

-- Deletes an event without active registrations. Outcomes: deleted, not_found,
-- forbidden, in_use.
CREATE FUNCTION events_delete(p_event uuid, p_caller uuid, p_admin boolean)
RETURNS TABLE (outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
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
    IF e.confirmed + e.waitlisted > 0 THEN
        RETURN QUERY SELECT 'in_use', jsonb_build_object('confirmed', e.confirmed,
                                                         'waitlisted', e.waitlisted), NULL::jsonb;
        RETURN;
    END IF;
    DELETE FROM events_events WHERE id = p_event;
    RETURN QUERY SELECT 'deleted', NULL::jsonb,
        jsonb_build_array(jsonb_build_object('type', 'event.deleted',
                                             'data', jsonb_build_object('event_id', p_event)));
END $$;

-- Grants the organiser role on an event to a user given by id or e-mail. Outcomes:
-- granted, exists, not_found, forbidden, no_user.
CREATE FUNCTION events_grant(p_event uuid, p_caller uuid, p_admin boolean, p_user uuid,
                             p_email text)
RETURNS TABLE (outcome text, body jsonb, notices jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e events_events;
    v_user uuid;
    v_new boolean;
BEGIN
    SELECT * INTO e FROM events_events WHERE id = p_event;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF NOT events_is_organiser(p_event, p_caller, p_admin) THEN
        RETURN QUERY SELECT CASE WHEN e.status = 'draft' THEN 'not_found' ELSE 'forbidden' END,
                            NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    SELECT u.id INTO v_user FROM sp_users u
     WHERE (p_user IS NOT NULL AND u.id = p_user)
        OR (p_email IS NOT NULL AND lower(u.email) = lower(p_email));
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_user', NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    INSERT INTO events_organisers (event_id, user_id, granted_by)
    VALUES (p_event, v_user, p_caller) ON CONFLICT DO NOTHING;
    v_new := FOUND;
    RETURN QUERY
    SELECT CASE WHEN v_new THEN 'granted' ELSE 'exists' END,
           jsonb_build_object('user_id', u.id, 'email', u.email, 'display_name', u.display_name,
                              'granted_at', events_ts(o.granted_at)),
           CASE WHEN v_new THEN jsonb_build_array(jsonb_build_object(
               'type', 'event.organiser_added',
               'data', jsonb_build_object('event_id', p_event, 'user_id', u.id))) END
      FROM events_organisers o JOIN sp_users u ON u.id = o.user_id
     WHERE o.event_id = p_event AND o.user_id = v_user;
END $$;
