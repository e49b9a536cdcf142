//! The OpenAPI 3.1 document of the admin API, served at
//! `/api/v1/openapi.json` (a test checks it against the routes).

use axum::Json;
use serde_json::{json, Value};

use super::{HttpError, BASE_PATH};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn tenant_id_parameter() -> Value {
    json!({
        "name": "id", "in": "path", "required": true,
        "schema": { "type": "string", "pattern": "^[a-z][a-z0-9_]{0,62}$" }
    })
}

/// The document.
pub fn document() -> Value {
    let common = |extra: &[(&str, Value)]| {
        let mut responses = serde_json::Map::new();
        responses.insert(
            "400".into(),
            error_response("Validation failure (bad id, bad field, unknown field, malformed JSON or query)"),
        );
        responses.insert("401".into(), error_response("Missing admin key"));
        responses.insert("403".into(), error_response("Wrong admin key"));
        for (code, value) in extra {
            responses.insert((*code).to_string(), value.clone());
        }
        Value::Object(responses)
    };
    let tenant_fields = json!({
        "license_tier": { "type": "string", "enum": ["shared", "dedicated"] },
        "bot_token": { "type": ["string", "null"], "writeOnly": true, "description": "Write-only; encrypted at rest. Empty or null (PUT) removes it." },
        "guild_ids": { "type": ["array", "null"], "items": { "type": "string", "pattern": "^[0-9]{1,20}$" } },
        "dm_role_id": { "type": ["string", "null"], "description": "Empty or null clears it." },
        "campaign_id": { "type": ["string", "null"], "description": "May name a campaign that does not exist yet. Empty or null clears it." },
        "monthly_session_hours": { "type": "number", "minimum": 0, "maximum": 1000000, "description": "0 = unlimited." }
    });
    let mut create_properties = tenant_fields.as_object().cloned().unwrap_or_default();
    create_properties.insert(
        "id".into(),
        json!({ "type": "string", "pattern": "^[a-z][a-z0-9_]{0,62}$" }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Glyphoxa admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tenants, sessions, usage and bot status of a Glyphoxa gateway. Every route needs the admin key."
        },
        "servers": [{ "url": BASE_PATH }],
        "security": [{ "bearer": [] }, { "apiKey": [] }],
        "paths": {
            "/tenants": {
                "get": {
                    "operationId": "listTenants", "summary": "List tenants",
                    "responses": common(&[("200", ok("Every tenant", json!({ "type": "array", "items": reference("Tenant") })))])
                },
                "post": {
                    "operationId": "createTenant", "summary": "Create a tenant (connects its bot in the background)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": reference("CreateTenant") } } },
                    "responses": common(&[
                        ("201", ok("Created", reference("Tenant"))),
                        ("409", error_response("A tenant with this id exists")),
                        ("413", error_response("Body too large"))
                    ])
                }
            },
            "/tenants/{id}": {
                "parameters": [tenant_id_parameter()],
                "get": {
                    "operationId": "getTenant", "summary": "Get a tenant",
                    "responses": common(&[("200", ok("The tenant", reference("Tenant"))), ("404", error_response("No such tenant"))])
                },
                "put": {
                    "operationId": "updateTenant",
                    "summary": "Change a tenant: absent fields are kept; \"\" or null clears dm_role_id, campaign_id and bot_token",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": reference("UpdateTenant") } } },
                    "responses": common(&[
                        ("200", ok("The changed tenant", reference("Tenant"))),
                        ("404", error_response("No such tenant")),
                        ("413", error_response("Body too large"))
                    ])
                },
                "delete": {
                    "operationId": "deleteTenant", "summary": "Delete a tenant and its data (bot disconnected in the background)",
                    "responses": common(&[("204", json!({ "description": "Deleted" })), ("404", error_response("No such tenant"))])
                }
            },
            "/tenants/{id}/sessions": {
                "parameters": [tenant_id_parameter()],
                "get": {
                    "operationId": "listSessions", "summary": "The tenant's sessions, live ones first",
                    "parameters": [{ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } }],
                    "responses": common(&[
                        ("200", ok("Sessions", json!({ "type": "array", "items": reference("Session") }))),
                        ("404", error_response("No such tenant"))
                    ])
                }
            },
            "/tenants/{id}/usage": {
                "parameters": [tenant_id_parameter()],
                "get": {
                    "operationId": "getUsage", "summary": "Session hours of one calendar month (UTC)",
                    "parameters": [{ "name": "period", "in": "query", "schema": { "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$" }, "description": "YYYY-MM; default: this month" }],
                    "responses": common(&[("200", ok("Usage", reference("Usage"))), ("404", error_response("No such tenant"))])
                }
            },
            "/tenants/{id}/bot": {
                "parameters": [tenant_id_parameter()],
                "get": {
                    "operationId": "getBotStatus", "summary": "The tenant's Discord bot connection",
                    "responses": common(&[("200", ok("Bot status", reference("BotStatus"))), ("404", error_response("No such tenant"))])
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "getOpenApi", "summary": "This document",
                    "responses": common(&[("200", ok("OpenAPI document", json!({ "type": "object" })))])
                }
            }
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "CreateTenant": {
                    "type": "object", "required": ["id", "license_tier"], "additionalProperties": false,
                    "properties": create_properties
                },
                "UpdateTenant": { "type": "object", "additionalProperties": false, "properties": tenant_fields },
                "Tenant": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "license_tier": { "type": "string", "enum": ["shared", "dedicated"] },
                        "has_bot_token": { "type": "boolean" },
                        "guild_ids": { "type": "array", "items": { "type": "string" } },
                        "dm_role_id": { "type": ["string", "null"] },
                        "campaign_id": { "type": ["string", "null"] },
                        "monthly_session_hours": { "type": "number" },
                        "created_at": { "type": "string", "format": "date-time" },
                        "updated_at": { "type": "string", "format": "date-time" }
                    }
                },
                "Session": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" }, "tenant_id": { "type": "string" },
                        "campaign_id": { "type": ["string", "null"] }, "guild_id": { "type": "string" },
                        "channel_id": { "type": "string" }, "license_tier": { "type": "string" },
                        "started_by": { "type": "string" },
                        "state": { "type": "string", "enum": ["pending", "active", "ended"] },
                        "worker_addr": { "type": ["string", "null"] }, "worker_id": { "type": ["string", "null"] },
                        "started_at": { "type": "string", "format": "date-time" },
                        "activated_at": { "type": ["string", "null"], "format": "date-time" },
                        "ended_at": { "type": ["string", "null"], "format": "date-time" },
                        "last_heartbeat": { "type": ["string", "null"], "format": "date-time" },
                        "end_reason": { "type": ["string", "null"] }, "error": { "type": ["string", "null"] },
                        "duration_seconds": { "type": "number" }
                    }
                },
                "Usage": {
                    "type": "object",
                    "properties": {
                        "tenant_id": { "type": "string" }, "period": { "type": "string" },
                        "session_hours": { "type": "number" }, "session_seconds": { "type": "number" },
                        "sessions": { "type": "integer" }, "monthly_session_hours": { "type": "number" },
                        "remaining_hours": { "type": ["number", "null"] }, "quota_reached": { "type": "boolean" }
                    }
                },
                "BotStatus": {
                    "type": "object",
                    "properties": {
                        "tenant_id": { "type": "string" }, "has_bot_token": { "type": "boolean" },
                        "state": { "type": "string", "enum": ["connected", "connecting", "disconnected", "error"] },
                        "message": { "type": ["string", "null"] }, "guild_count": { "type": "integer" }
                    }
                }
            }
        }
    })
}

pub(super) async fn serve(query: axum::extract::RawQuery) -> Result<Json<Value>, HttpError> {
    super::body::query(query, &[])?;
    Ok(Json(document()))
}
