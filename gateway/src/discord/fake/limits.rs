//! Discord's limits on what a bot sends (message length, embeds,
//! autocomplete choices, modals), enforced like the real API so that a bot
//! that cuts or overfills a reply fails its tests instead of production.

use serde_json::Value;

use super::api_error::ApiError;

/// Characters of `content`.
pub(super) const CONTENT_MAX: usize = 2000;
/// Embeds per message.
pub(super) const EMBEDS_MAX: usize = 10;
/// Characters of an embed description.
pub(super) const EMBED_DESCRIPTION_MAX: usize = 4096;
/// Characters of all embeds of a message together.
pub(super) const EMBEDS_TOTAL_MAX: usize = 6000;
/// Autocomplete choices.
pub(super) const CHOICES_MAX: usize = 25;

fn too_long(path: Vec<String>, max: usize) -> ApiError {
    ApiError::invalid_form(
        &path,
        "BASE_TYPE_MAX_LENGTH",
        &format!("Must be {max} or fewer in length."),
    )
}

fn path(prefix: &[&str], rest: &[&str]) -> Vec<String> {
    prefix.iter().chain(rest).map(|key| (*key).to_owned()).collect()
}

fn chars(value: Option<&Value>) -> usize {
    value.and_then(Value::as_str).map_or(0, |text| text.chars().count())
}

fn check_len(value: Option<&Value>, max: usize, at: Vec<String>) -> Result<usize, ApiError> {
    let count = chars(value);
    if count > max {
        return Err(too_long(at, max));
    }
    Ok(count)
}

fn non_empty_array(value: Option<&Value>) -> bool {
    value.and_then(Value::as_array).is_some_and(|items| !items.is_empty())
}

/// Checks a message payload (create or edit) found at `prefix` of the body.
/// `files` is the number of files uploaded with it; `creating` demands that
/// the message is not empty.
pub(super) fn check_message(payload: &Value, prefix: &[&str], files: usize, creating: bool) -> Result<(), ApiError> {
    let Some(message) = payload.as_object() else {
        return Err(ApiError::invalid_form(
            &path(prefix, &[]),
            "DICT_TYPE_CONVERT",
            "Only dictionaries may be used in a DictType",
        ));
    };
    check_len(message.get("content"), CONTENT_MAX, path(prefix, &["content"]))?;
    if let Some(embeds) = message.get("embeds").and_then(Value::as_array) {
        if embeds.len() > EMBEDS_MAX {
            return Err(too_long(path(prefix, &["embeds"]), EMBEDS_MAX));
        }
        let mut total = 0;
        for (index, embed) in embeds.iter().enumerate() {
            total += embed_chars(embed, prefix, index)?;
        }
        if total > EMBEDS_TOTAL_MAX {
            return Err(ApiError::invalid_form(
                &path(prefix, &["embeds"]),
                "MAX_EMBED_SIZE_EXCEEDED",
                &format!("Embed size exceeds maximum size of {EMBEDS_TOTAL_MAX}"),
            ));
        }
    }
    if let Some(rows) = message.get("components").and_then(Value::as_array) {
        if rows.len() > 5 {
            return Err(too_long(path(prefix, &["components"]), 5));
        }
    }
    let empty = chars(message.get("content")) == 0
        && !non_empty_array(message.get("embeds"))
        && !non_empty_array(message.get("components"))
        && !non_empty_array(message.get("sticker_ids"))
        && message.get("poll").is_none_or(Value::is_null)
        && files == 0;
    if creating && empty {
        return Err(ApiError::empty_message());
    }
    Ok(())
}

/// Checks one embed's fields and returns its size in characters.
fn embed_chars(embed: &Value, prefix: &[&str], index: usize) -> Result<usize, ApiError> {
    let at = |rest: &[&str]| {
        let mut full = path(prefix, &["embeds"]);
        full.push(index.to_string());
        full.extend(rest.iter().map(|key| (*key).to_owned()));
        full
    };
    let mut total = check_len(embed.get("title"), 256, at(&["title"]))?;
    total += check_len(embed.get("description"), EMBED_DESCRIPTION_MAX, at(&["description"]))?;
    total += check_len(embed.pointer("/footer/text"), 2048, at(&["footer", "text"]))?;
    total += check_len(embed.pointer("/author/name"), 256, at(&["author", "name"]))?;
    if let Some(fields) = embed.get("fields").and_then(Value::as_array) {
        if fields.len() > 25 {
            return Err(too_long(at(&["fields"]), 25));
        }
        for (number, field) in fields.iter().enumerate() {
            let number = number.to_string();
            total += check_len(field.get("name"), 256, at(&["fields", &number, "name"]))?;
            total += check_len(field.get("value"), 1024, at(&["fields", &number, "value"]))?;
        }
    }
    Ok(total)
}

/// Checks the `data` of an autocomplete result (callback type 8).
pub(super) fn check_choices(data: &Value) -> Result<(), ApiError> {
    let count = data.get("choices").and_then(Value::as_array).map_or(0, Vec::len);
    if count > CHOICES_MAX {
        return Err(too_long(path(&["data", "choices"], &[]), CHOICES_MAX));
    }
    Ok(())
}

/// Checks the `data` of a modal (callback type 9): custom id, title and 1 to 5 rows.
pub(super) fn check_modal(data: &Value) -> Result<(), ApiError> {
    for key in ["custom_id", "title"] {
        if chars(data.get(key)) == 0 {
            return Err(ApiError::invalid_form(
                &path(&["data", key], &[]),
                "BASE_TYPE_REQUIRED",
                "This field is required",
            ));
        }
    }
    let rows = data.get("components").and_then(Value::as_array).map_or(0, Vec::len);
    if !(1..=5).contains(&rows) {
        return Err(ApiError::invalid_form(
            &path(&["data", "components"], &[]),
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 5 in length.",
        ));
    }
    Ok(())
}
