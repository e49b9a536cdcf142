//! Application commands per application and guild (or global): bulk
//! overwrite, create, read, edit and delete, echoed back with ids like
//! Discord does (a command keeps its id when overwritten under the same name).

use serde_json::{json, Map, Value};

use super::api_error::ApiError;
use super::fixtures::BotFixture;
use super::state::FakeState;

/// Commands per scope (Discord allows 100 chat commands).
const COMMANDS_MAX: usize = 100;

/// Where commands live: `(application_id, guild_id)`; no guild = global.
pub(super) type Scope = (String, Option<String>);

/// The scope of `/applications/{app}[/guilds/{guild}]/commands` for `bot`.
pub(super) fn scope(bot: &BotFixture, application_id: &str, guild_id: Option<&str>) -> Result<Scope, ApiError> {
    if bot.application_id != application_id {
        return Err(ApiError::not_your_application());
    }
    if let Some(guild_id) = guild_id {
        if !bot.guilds.iter().any(|guild| guild.id == guild_id) {
            return Err(ApiError::missing_access());
        }
    }
    Ok((application_id.to_owned(), guild_id.map(str::to_owned)))
}

fn at(index: Option<usize>, key: &str) -> Vec<String> {
    index
        .map(|index| index.to_string())
        .into_iter()
        .chain(std::iter::once(key.to_owned()))
        .collect()
}

/// Checks one command payload like Discord does (name, description, type).
fn check(command: &Value, index: Option<usize>) -> Result<&Map<String, Value>, ApiError> {
    let Some(fields) = command.as_object() else {
        return Err(ApiError::invalid_form(
            &index.map(|index| index.to_string()).into_iter().collect::<Vec<_>>(),
            "DICT_TYPE_CONVERT",
            "Only dictionaries may be used in a DictType",
        ));
    };
    let name = fields.get("name").and_then(Value::as_str).unwrap_or_default();
    if !(1..=32).contains(&name.chars().count()) {
        return Err(ApiError::invalid_form(
            &at(index, "name"),
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 32 in length.",
        ));
    }
    let chat_input = fields.get("type").and_then(Value::as_u64).unwrap_or(1) == 1;
    let description = fields.get("description").and_then(Value::as_str).unwrap_or_default();
    if chat_input && !(1..=100).contains(&description.chars().count()) {
        return Err(ApiError::invalid_form(
            &at(index, "description"),
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.",
        ));
    }
    Ok(fields)
}

fn same_command(stored: &Value, fields: &Map<String, Value>) -> bool {
    let kind = |value: Option<&Value>| value.and_then(Value::as_u64).unwrap_or(1);
    stored.get("name") == fields.get("name") && kind(stored.get("type")) == kind(fields.get("type"))
}

impl FakeState {
    /// The command object Discord echoes for `fields`, keeping `id` of an older one.
    fn command_object(&mut self, scope: &Scope, fields: &Map<String, Value>, id: Option<String>) -> Value {
        let mut command = fields.clone();
        let id = id.unwrap_or_else(|| self.next_id());
        let version = self.next_id();
        command.insert("id".to_owned(), json!(id));
        command.insert("application_id".to_owned(), json!(scope.0));
        command.insert("version".to_owned(), json!(version));
        command.entry("type").or_insert_with(|| json!(1));
        command.entry("description").or_insert_with(|| json!(""));
        command.entry("default_member_permissions").or_insert(Value::Null);
        command.entry("nsfw").or_insert_with(|| json!(false));
        match &scope.1 {
            Some(guild_id) => {
                command.insert("guild_id".to_owned(), json!(guild_id));
            }
            None => {
                command.entry("dm_permission").or_insert_with(|| json!(true));
            }
        }
        Value::Object(command)
    }

    /// `PUT .../commands`: replaces every command of the scope.
    pub(super) fn overwrite_commands(&mut self, scope: Scope, body: Option<&Value>) -> Result<Vec<Value>, ApiError> {
        let Some(list) = body.and_then(Value::as_array) else {
            return Err(ApiError::invalid_form(
                &[],
                "LIST_TYPE_CONVERT",
                "Only iterables may be used in a ListType",
            ));
        };
        if list.len() > COMMANDS_MAX {
            return Err(ApiError::invalid_form(
                &[],
                "BASE_TYPE_MAX_LENGTH",
                &format!("Must be {COMMANDS_MAX} or fewer in length."),
            ));
        }
        let previous = self.commands.get(&scope).cloned().unwrap_or_default();
        let mut stored: Vec<Value> = Vec::with_capacity(list.len());
        for (index, command) in list.iter().enumerate() {
            let fields = check(command, Some(index))?;
            if stored.iter().any(|earlier| same_command(earlier, fields)) {
                return Err(ApiError::invalid_form(
                    &at(Some(index), "name"),
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                ));
            }
            let id = previous
                .iter()
                .find(|old| same_command(old, fields))
                .and_then(|old| old.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            stored.push(self.command_object(&scope, fields, id));
        }
        self.commands.insert(scope, stored.clone());
        Ok(stored)
    }

    /// `POST .../commands`: creates or replaces the command of that name.
    pub(super) fn upsert_command(&mut self, scope: Scope, body: Option<&Value>) -> Result<Value, ApiError> {
        let fields = check(body.unwrap_or(&Value::Null), None)?;
        let existing = self.commands.get(&scope).cloned().unwrap_or_default();
        let position = existing.iter().position(|old| same_command(old, fields));
        let id = position
            .and_then(|index| existing.get(index))
            .and_then(|old| old.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let command = self.command_object(&scope, fields, id);
        let list = self.commands.entry(scope).or_default();
        match position {
            Some(index) if index < list.len() => list[index] = command.clone(),
            _ => list.push(command.clone()),
        }
        Ok(command)
    }

    /// `GET .../commands`.
    pub(super) fn list_commands(&self, scope: &Scope) -> Vec<Value> {
        self.commands.get(scope).cloned().unwrap_or_default()
    }

    fn command_index(&self, scope: &Scope, id: &str) -> Result<usize, ApiError> {
        self.commands
            .get(scope)
            .and_then(|list| {
                list.iter()
                    .position(|command| command.get("id").and_then(Value::as_str) == Some(id))
            })
            .ok_or_else(ApiError::unknown_command)
    }

    /// `GET .../commands/{id}`.
    pub(super) fn get_command(&self, scope: &Scope, id: &str) -> Result<Value, ApiError> {
        let index = self.command_index(scope, id)?;
        Ok(self
            .commands
            .get(scope)
            .and_then(|list| list.get(index))
            .cloned()
            .unwrap_or_default())
    }

    /// `PATCH .../commands/{id}`: merges the given fields.
    pub(super) fn edit_command(&mut self, scope: &Scope, id: &str, body: Option<&Value>) -> Result<Value, ApiError> {
        let index = self.command_index(scope, id)?;
        let Some(changes) = body.and_then(Value::as_object) else {
            return Err(ApiError::invalid_form(
                &[],
                "DICT_TYPE_CONVERT",
                "Only dictionaries may be used in a DictType",
            ));
        };
        let mut fields = self
            .commands
            .get(scope)
            .and_then(|list| list.get(index))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        fields.extend(changes.iter().map(|(key, value)| (key.clone(), value.clone())));
        check(&Value::Object(fields.clone()), None)?;
        let command = self.command_object(scope, &fields, Some(id.to_owned()));
        if let Some(slot) = self.commands.get_mut(scope).and_then(|list| list.get_mut(index)) {
            *slot = command.clone();
        }
        Ok(command)
    }

    /// `DELETE .../commands/{id}`.
    pub(super) fn delete_command(&mut self, scope: &Scope, id: &str) -> Result<(), ApiError> {
        let index = self.command_index(scope, id)?;
        if let Some(list) = self.commands.get_mut(scope) {
            list.remove(index);
        }
        Ok(())
    }

    /// The id of command `name` as registered for the scope of an
    /// interaction (guild first, then global).
    pub(super) fn command_id(&self, application_id: &str, guild_id: Option<&str>, name: &str) -> Option<String> {
        let scopes = [
            guild_id.map(|guild| (application_id.to_owned(), Some(guild.to_owned()))),
            Some((application_id.to_owned(), None)),
        ];
        scopes.into_iter().flatten().find_map(|scope| {
            self.commands.get(&scope).and_then(|list| {
                list.iter()
                    .find(|command| command.get("name").and_then(Value::as_str) == Some(name))
                    .and_then(|command| command.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        })
    }
}
