//! The Glyphoxa control plane: tenants, the admin REST API, stores, session
//! orchestration, worker clients and the Discord slash commands.
