-- Core schema: settings that plugins receive, changed through the API at run time.
CREATE TABLE sp_plugin_settings (
    plugin     text PRIMARY KEY CHECK (plugin ~ '^[a-z0-9_]+$'),
    settings   jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now()
);
