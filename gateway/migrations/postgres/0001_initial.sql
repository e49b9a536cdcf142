-- Glyphoxa gateway schema (PostgreSQL). Times are unix milliseconds (UTC).
-- Keep in step with ../sqlite/0001_initial.sql: same tables, columns,
-- constraints and index names.

CREATE TABLE tenants (
    id                    TEXT    PRIMARY KEY NOT NULL,
    license_tier          TEXT    NOT NULL CHECK (license_tier IN ('shared', 'dedicated')),
    bot_token             BYTEA,
    guild_ids             TEXT    NOT NULL DEFAULT '[]',
    dm_role_id            TEXT,
    campaign_id           TEXT,
    monthly_session_hours DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (monthly_session_hours >= 0),
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

CREATE TABLE sessions (
    id                  TEXT    PRIMARY KEY NOT NULL,
    tenant_id           TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    campaign_id         TEXT,
    guild_id            TEXT    NOT NULL,
    channel_id          TEXT    NOT NULL,
    license_tier        TEXT    NOT NULL CHECK (license_tier IN ('shared', 'dedicated')),
    started_by          TEXT    NOT NULL,
    state               TEXT    NOT NULL CHECK (state IN ('pending', 'active', 'ended')),
    worker_addr         TEXT,
    worker_id           TEXT,
    started_at          BIGINT NOT NULL,
    activated_at        BIGINT,
    ended_at            BIGINT,
    last_heartbeat      BIGINT,
    end_reason          TEXT,
    error               TEXT,
    billed_ms           BIGINT NOT NULL DEFAULT 0,
    last_event_sequence BIGINT NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, id)
);

-- SPEC §3 license rules, enforced by the database.
CREATE UNIQUE INDEX sessions_one_live_per_guild
    ON sessions (guild_id) WHERE state <> 'ended';
CREATE UNIQUE INDEX sessions_one_live_per_shared_tenant
    ON sessions (tenant_id) WHERE state <> 'ended' AND license_tier = 'shared';
CREATE UNIQUE INDEX sessions_one_live_per_dedicated_tenant_guild
    ON sessions (tenant_id, guild_id) WHERE state <> 'ended' AND license_tier = 'dedicated';
CREATE INDEX sessions_by_tenant ON sessions (tenant_id, started_at);
CREATE INDEX sessions_live ON sessions (state) WHERE state <> 'ended';

CREATE TABLE usage (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    period     TEXT    NOT NULL,
    session_ms BIGINT NOT NULL DEFAULT 0,
    sessions   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, period)
);

CREATE TABLE campaigns (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL,
    system      TEXT    NOT NULL DEFAULT '',
    description TEXT    NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name_key)
);

CREATE TABLE entities (
    tenant_id   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    campaign_id TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('npc', 'location', 'item', 'faction', 'quest', 'lore')),
    description TEXT    NOT NULL DEFAULT '',
    tags        TEXT    NOT NULL DEFAULT '[]',
    properties  TEXT    NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, campaign_id, kind, name_key),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE entity_relationships (
    tenant_id TEXT    NOT NULL,
    entity_id TEXT    NOT NULL,
    position  BIGINT NOT NULL,
    target    TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, entity_id, position),
    FOREIGN KEY (tenant_id, entity_id) REFERENCES entities (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE npc_definitions (
    tenant_id    TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    campaign_id  TEXT    NOT NULL,
    position     BIGINT NOT NULL,
    name         TEXT    NOT NULL,
    name_key     TEXT    NOT NULL,
    personality  TEXT    NOT NULL,
    voice        TEXT    NOT NULL,
    address_only BOOLEAN NOT NULL DEFAULT FALSE,
    gm_helper    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, campaign_id, name_key),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX npc_definitions_one_gm_helper
    ON npc_definitions (tenant_id, campaign_id) WHERE gm_helper;

CREATE TABLE transcript_entries (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    TEXT    NOT NULL,
    session_id   TEXT    NOT NULL,
    sequence     BIGINT,
    speaker_id   TEXT    NOT NULL,
    speaker_name TEXT    NOT NULL,
    npc_id       TEXT,
    text         TEXT    NOT NULL,
    start_ms     BIGINT NOT NULL,
    end_ms       BIGINT NOT NULL,
    outcome      TEXT,
    turn_id      TEXT,
    puppet       BOOLEAN NOT NULL DEFAULT FALSE,
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX transcript_entries_by_session ON transcript_entries (tenant_id, session_id, id);

CREATE TABLE turn_results (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    session_id      TEXT    NOT NULL,
    sequence        BIGINT,
    turn_id         TEXT    NOT NULL,
    npc_id          TEXT,
    npc_name        TEXT,
    outcome         TEXT    NOT NULL,
    latencies       TEXT    NOT NULL DEFAULT '{}',
    speech_end_ms   BIGINT,
    speaker_id      TEXT,
    error           TEXT,
    played_ms       BIGINT NOT NULL DEFAULT 0,
    at_ms           BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX turn_results_by_session ON turn_results (tenant_id, session_id, id);

CREATE TABLE recaps (
    tenant_id         TEXT    NOT NULL,
    session_id        TEXT    NOT NULL,
    text              TEXT    NOT NULL,
    audio             BYTEA,
    audio_sample_rate BIGINT,
    audio_channels    BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, session_id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE feedback (
    tenant_id       TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    session_id      TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    voice_latency   BIGINT NOT NULL CHECK (voice_latency BETWEEN 1 AND 5),
    npc_personality BIGINT NOT NULL CHECK (npc_personality BETWEEN 1 AND 5),
    memory_accuracy BIGINT NOT NULL CHECK (memory_accuracy BETWEEN 1 AND 5),
    dm_workflow     BIGINT NOT NULL CHECK (dm_workflow BETWEEN 1 AND 5),
    comment         TEXT    NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, session_id, user_id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
