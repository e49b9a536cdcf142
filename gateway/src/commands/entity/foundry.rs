//! Foundry VTT exports for `/entity import` (SPEC §2): actors become `npc`
//! entities, items `item` entities and journal entries `lore` entities.
//!
//! Accepted shapes: one exported document (what Foundry's "Export Data"
//! writes), an array of documents, or a bundle object
//! `{"actors": [..], "items": [..], "journal": [..]}`. Foundry exports do
//! not say which kind of document they hold, so a lone document is
//! recognised by its shape (journal pages, a prototype token, actor
//! details, an item description); inside a bundle the key says it.
//! Descriptions are Foundry's HTML, turned into plain text here.

use glyphoxa_pipeline::campaign::{Entity, EntityKind, MAX_NAME_CHARS};
use serde_json::Value;

use crate::store::MAX_DESCRIPTION_CHARS;

/// What kind of Foundry document an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocumentKind {
    /// A character, NPC or other actor: becomes an `npc` entity.
    Actor,
    /// An item: becomes an `item` entity.
    Item,
    /// A journal entry: becomes a `lore` entity.
    Journal,
}

impl DocumentKind {
    /// The entity kind a document of this kind becomes.
    pub(crate) fn entity_kind(self) -> EntityKind {
        match self {
            DocumentKind::Actor => EntityKind::Npc,
            DocumentKind::Item => EntityKind::Item,
            DocumentKind::Journal => EntityKind::Lore,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            DocumentKind::Actor => "actor",
            DocumentKind::Item => "item",
            DocumentKind::Journal => "journal entry",
        }
    }
}

/// One document of an export, not yet converted.
#[derive(Debug, Clone)]
pub(crate) struct Document<'a> {
    /// Where it is in the file, for messages ("entry 3", "actors entry 2").
    pub(crate) place: String,
    /// Its kind when the bundle key says so; otherwise found from its shape.
    hint: Option<DocumentKind>,
    /// The JSON of the document.
    value: &'a Value,
}

/// The documents of an export in file order, plus the bundle keys that were
/// not imported.
#[derive(Debug, Clone, Default)]
pub(crate) struct Export<'a> {
    /// Every document to import, in order.
    pub(crate) documents: Vec<Document<'a>>,
    /// Top-level keys of a bundle that hold no actors, items or journal
    /// entries (e.g. `scenes`), so the reply can say they were skipped.
    pub(crate) skipped_keys: Vec<String>,
}

/// One converted document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Converted {
    /// The entity to store.
    pub(crate) entity: Entity,
    /// Whether its description was cut to fit the 2000-character limit.
    pub(crate) shortened: bool,
}

/// Bundle keys and the kind of the documents under them.
const BUNDLE_KEYS: [(&str, DocumentKind); 5] = [
    ("actors", DocumentKind::Actor),
    ("items", DocumentKind::Item),
    ("journal", DocumentKind::Journal),
    ("journals", DocumentKind::Journal),
    ("journalEntries", DocumentKind::Journal),
];

/// Splits an export into its documents. Fails when the JSON is none of the
/// accepted shapes.
pub(crate) fn documents(value: &Value) -> Result<Export<'_>, String> {
    match value {
        Value::Array(items) => Ok(Export {
            documents: items
                .iter()
                .enumerate()
                .map(|(index, value)| Document {
                    place: format!("entry {}", index + 1),
                    hint: None,
                    value,
                })
                .collect(),
            skipped_keys: Vec::new(),
        }),
        Value::Object(map) if is_bundle(map) => {
            let mut export = Export::default();
            for (key, kind) in BUNDLE_KEYS {
                let Some(list) = map.get(key) else { continue };
                let Some(items) = list.as_array() else {
                    return Err(format!("`{key}` must be a list of {}s", kind.noun()));
                };
                export
                    .documents
                    .extend(items.iter().enumerate().map(|(index, value)| Document {
                        place: format!("{key} entry {}", index + 1),
                        hint: Some(kind),
                        value,
                    }));
            }
            export.skipped_keys = map
                .keys()
                .filter(|key| !BUNDLE_KEYS.iter().any(|(known, _)| known == key))
                .cloned()
                .collect();
            Ok(export)
        }
        Value::Object(_) => Ok(Export {
            documents: vec![Document {
                place: "the document".into(),
                hint: None,
                value,
            }],
            skipped_keys: Vec::new(),
        }),
        _ => Err("expected a Foundry VTT document, a list of documents or an \
                  {\"actors\": [..], \"items\": [..], \"journal\": [..]} bundle"
            .into()),
    }
}

/// A bundle has no name of its own (every document has one) and at least
/// one of the bundle keys.
fn is_bundle(map: &serde_json::Map<String, Value>) -> bool {
    !map.contains_key("name") && BUNDLE_KEYS.iter().any(|(key, _)| map.contains_key(*key))
}

impl Document<'_> {
    /// Converts the document; the error says what is wrong with it.
    pub(crate) fn to_entity(&self) -> Result<Converted, String> {
        let Some(map) = self.value.as_object() else {
            return Err("is not a JSON object".into());
        };
        let name = map
            .get("name")
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or_default();
        if name.is_empty() {
            return Err("has no `name`".into());
        }
        let length = name.chars().count();
        if length > MAX_NAME_CHARS {
            return Err(format!(
                "its name is {length} characters long; at most {MAX_NAME_CHARS} are allowed"
            ));
        }
        let Some(kind) = self.hint.or_else(|| detect(self.value)) else {
            return Err(
                "is not a Foundry actor, item or journal entry (no biography, description or pages found)".into(),
            );
        };
        let html = match kind {
            DocumentKind::Actor => first_text(self.value, ACTOR_DESCRIPTIONS),
            DocumentKind::Item => first_text(self.value, ITEM_DESCRIPTIONS),
            DocumentKind::Journal => journal_text(self.value, name),
        };
        let (description, shortened) = fit_description(&html_to_text(&html));
        let tags = match (kind, map.get("type").and_then(Value::as_str).map(str::trim)) {
            (DocumentKind::Actor | DocumentKind::Item, Some(foundry_type)) if !foundry_type.is_empty() => {
                vec![foundry_type.to_lowercase()]
            }
            _ => Vec::new(),
        };
        Ok(Converted {
            entity: Entity {
                name: name.to_string(),
                kind: kind.entity_kind(),
                description,
                tags,
                properties: Default::default(),
                relationships: Vec::new(),
            },
            shortened,
        })
    }

    /// The document's place and, when it has one, its name:
    /// `entry 3 ("Goblin")`.
    pub(crate) fn label(&self) -> String {
        match self.value.get("name").and_then(Value::as_str).map(str::trim) {
            Some(name) if !name.is_empty() => format!("{} ({name:?})", self.place),
            _ => self.place.clone(),
        }
    }
}

/// Where actors keep their description: current (`system`) and pre-v10
/// (`data`) layouts of the common systems.
const ACTOR_DESCRIPTIONS: &[&[&str]] = &[
    &["system", "details", "biography", "value"],
    &["data", "details", "biography", "value"],
    &["system", "details", "biography"],
    &["system", "biography", "value"],
    &["system", "biography"],
    &["system", "details", "publicNotes"],
    &["system", "description", "value"],
    &["system", "description"],
];

/// Where items keep their description.
const ITEM_DESCRIPTIONS: &[&[&str]] = &[
    &["system", "description", "value"],
    &["data", "description", "value"],
    &["system", "description"],
];

/// The first non-empty string at one of `paths`.
fn first_text(value: &Value, paths: &[&[&str]]) -> String {
    paths
        .iter()
        .filter_map(|path| path.iter().try_fold(value, |at, key| at.get(key)))
        .filter_map(Value::as_str)
        .find(|text| !text.trim().is_empty())
        .unwrap_or_default()
        .to_string()
}

/// A journal entry's text: its text pages (v10+), each headed by the page
/// name when it differs from the entry's, or the legacy `content`.
fn journal_text(value: &Value, entry_name: &str) -> String {
    if let Some(pages) = value.get("pages").and_then(Value::as_array) {
        let mut parts = Vec::new();
        for page in pages {
            let kind = page.get("type").and_then(Value::as_str).unwrap_or("text");
            if kind != "text" {
                continue;
            }
            let text = first_text(page, &[&["text", "content"], &["text", "markdown"]]);
            if text.trim().is_empty() {
                continue;
            }
            match page.get("name").and_then(Value::as_str).map(str::trim) {
                Some(title) if !title.is_empty() && !title.eq_ignore_ascii_case(entry_name) => {
                    parts.push(format!("<p>{}</p>{text}", escape(title)));
                }
                _ => parts.push(text),
            }
        }
        if !parts.is_empty() {
            return parts.join("<p></p>");
        }
    }
    first_text(value, &[&["content"]])
}

/// Escapes a page title so it survives [`html_to_text`] unchanged.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Guesses the kind of a document from its shape (Foundry's export has no
/// type marker). Compendium exports carry `_key` (`!actors!…`), which wins.
fn detect(value: &Value) -> Option<DocumentKind> {
    if let Some(key) = value.get("_key").and_then(Value::as_str) {
        if key.starts_with("!actors!") {
            return Some(DocumentKind::Actor);
        }
        if key.starts_with("!items!") {
            return Some(DocumentKind::Item);
        }
        if key.starts_with("!journal!") {
            return Some(DocumentKind::Journal);
        }
    }
    if value.get("pages").is_some_and(Value::is_array) || value.get("content").is_some_and(Value::is_string) {
        return Some(DocumentKind::Journal);
    }
    if value.get("prototypeToken").is_some() || value.get("token").is_some_and(Value::is_object) {
        return Some(DocumentKind::Actor);
    }
    let system = value.get("system").or_else(|| value.get("data"));
    let has = |key: &str| system.is_some_and(|s| s.get(key).is_some());
    if has("details") || has("abilities") || has("biography") || value.get("items").is_some_and(Value::is_array) {
        return Some(DocumentKind::Actor);
    }
    if has("description") {
        return Some(DocumentKind::Item);
    }
    None
}

/// Cuts a description to the store's limit at a word boundary, marking the
/// cut with "…"; `true` when it was cut.
fn fit_description(text: &str) -> (String, bool) {
    if text.chars().count() <= MAX_DESCRIPTION_CHARS {
        return (text.to_string(), false);
    }
    let hard: String = text.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
    let cut = match hard.rfind(char::is_whitespace) {
        Some(at) if hard[..at].chars().count() > MAX_DESCRIPTION_CHARS - 200 => hard[..at].trim_end(),
        _ => hard.as_str(),
    };
    (format!("{cut}…"), true)
}

/// Elements that start a new line in rendered HTML.
const BLOCK_TAGS: &[&str] = &[
    "p",
    "div",
    "br",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "blockquote",
    "section",
    "article",
    "header",
    "footer",
    "aside",
    "hr",
    "pre",
    "dl",
    "dt",
    "dd",
    "figure",
    "figcaption",
    "details",
    "summary",
];

/// Plain text of Foundry's HTML: tags removed (block elements become line
/// breaks, list items "- " lines, scripts and styles dropped), character
/// references decoded, Foundry links like `@UUID[Actor.x]{Grimble}` reduced
/// to their label, runs of blanks collapsed. Text without any tag keeps its
/// own line breaks.
pub(crate) fn html_to_text(html: &str) -> String {
    let is_html = html.contains('<');
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' if rest.starts_with("<!--") => {
                rest = rest.find("-->").map_or("", |end| &rest[end + 3..]);
            }
            '<' if !starts_tag(rest) => {
                out.push('<');
                rest = &rest[1..];
            }
            '<' => match rest.find('>') {
                Some(end) => {
                    let (closing, name) = tag_name(&rest[1..end]);
                    rest = &rest[end + 1..];
                    if !closing && (name == "script" || name == "style") {
                        let close = format!("</{name}");
                        rest = find_ignoring_case(rest, &close)
                            .and_then(|at| rest[at..].find('>').map(|gt| &rest[at + gt + 1..]))
                            .unwrap_or("");
                    } else if name == "li" {
                        out.push_str(if closing { "\n" } else { "\n- " });
                    } else if name == "td" || name == "th" {
                        out.push(' ');
                    } else if BLOCK_TAGS.contains(&name.as_str()) {
                        out.push('\n');
                    }
                }
                None => {
                    out.push('<');
                    rest = &rest[1..];
                }
            },
            '&' => {
                let (decoded, used) = decode_reference(rest);
                out.push_str(&decoded);
                rest = &rest[used..];
            }
            c if is_html && c.is_whitespace() => {
                out.push(' ');
                rest = &rest[c.len_utf8()..];
            }
            c => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    tidy(&strip_foundry_links(&out), !is_html)
}

/// Whether the `<` at the start of `text` opens a tag (`<p`, `</p`) rather
/// than being a literal less-than sign.
fn starts_tag(text: &str) -> bool {
    let mut after = text[1..].chars();
    match after.next() {
        Some('/') => after.next().is_some_and(|c| c.is_ascii_alphabetic()),
        Some(c) => c.is_ascii_alphabetic(),
        None => false,
    }
}

/// `(closing, lower-case name)` of the inside of a tag (`/p`, `br/`,
/// `a href=".."`).
fn tag_name(inside: &str) -> (bool, String) {
    let inside = inside.trim_start();
    let (closing, inside) = match inside.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, inside),
    };
    let name = inside
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    (closing, name)
}

/// Byte offset of `needle` (ASCII) in `haystack`, ignoring ASCII case.
fn find_ignoring_case(haystack: &str, needle: &str) -> Option<usize> {
    let needle = needle.as_bytes();
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

/// Decodes the character reference at the start of `text` (which starts
/// with `&`); returns the text and the bytes used. Unknown references stay
/// as they are.
fn decode_reference(text: &str) -> (String, usize) {
    let literal = ("&".to_string(), 1);
    let Some(end) = text[1..].find(';').map(|at| at + 1).filter(|&at| at <= 12) else {
        return literal;
    };
    let name = &text[1..end];
    let decoded = if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => number.parse::<u32>().ok(),
        };
        match code.and_then(char::from_u32) {
            Some(c) => c.to_string(),
            None => return literal,
        }
    } else {
        let named = match name {
            "amp" => "&",
            "lt" => "<",
            "gt" => ">",
            "quot" => "\"",
            "apos" => "'",
            "nbsp" | "ensp" | "emsp" | "thinsp" => " ",
            "shy" => "",
            "ndash" => "–",
            "mdash" => "—",
            "hellip" => "…",
            "lsquo" => "‘",
            "rsquo" => "’",
            "ldquo" => "“",
            "rdquo" => "”",
            "laquo" => "«",
            "raquo" => "»",
            "bull" => "•",
            "middot" => "·",
            "times" => "×",
            "deg" => "°",
            "frac12" => "½",
            "frac14" => "¼",
            "frac34" => "¾",
            "copy" => "©",
            "reg" => "®",
            _ => return literal,
        };
        named.to_string()
    };
    (decoded, end + 1)
}

/// `@UUID[Actor.abc]{Grimble}` → `Grimble`; `@Check[dex]` → `dex`.
fn strip_foundry_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let word = after.chars().take_while(char::is_ascii_alphabetic).count();
        let link = (word > 0)
            .then(|| after[word..].strip_prefix('['))
            .flatten()
            .and_then(|target| target.find(']').map(|close| (&target[..close], &target[close + 1..])));
        match link {
            Some((target, tail)) => match tail
                .strip_prefix('{')
                .and_then(|t| t.find('}').map(|c| (&t[..c], &t[c + 1..])))
            {
                Some((label, tail)) => {
                    out.push_str(label);
                    rest = tail;
                }
                None => {
                    out.push_str(target);
                    rest = tail;
                }
            },
            None => {
                out.push('@');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Collapses blanks within lines and trims lines. Empty lines go (HTML
/// paragraphs become one line each, compact for the NPCs' context), except
/// that plain text keeps one empty line between its paragraphs.
fn tidy(text: &str, keep_paragraphs: bool) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() && (!keep_paragraphs || lines.last().is_none_or(String::is_empty)) {
            continue;
        }
        lines.push(line);
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn html_becomes_readable_text() {
        let html = "<h2>Grimble</h2><p>A <strong>grumpy</strong>&nbsp;dwarf &amp; innkeeper.</p>\n\
                    <ul><li>Loves gossip</li><li>Hates elves</li></ul><script>alert(1)</script>\
                    <p>See @UUID[JournalEntry.abc]{the Inn} and @Check[dex].</p><!-- hidden -->";
        assert_eq!(
            html_to_text(html),
            "Grimble\nA grumpy dwarf & innkeeper.\n- Loves gossip\n- Hates elves\nSee the Inn and dex."
        );
    }

    #[test]
    fn paragraphs_and_references_and_plain_text() {
        assert_eq!(
            html_to_text("<p>One</p><p></p><p>Two &#233;&#x41; &bogus; 3 < 4 <b>bold</b></p>"),
            "One\nTwo éA &bogus; 3 < 4 bold"
        );
        assert_eq!(html_to_text("Line one\n\nLine two"), "Line one\n\nLine two");
        assert_eq!(html_to_text("<STYLE>p{}</style>Ok<br/>now"), "Ok\nnow");
        assert_eq!(html_to_text(""), "");
        assert_eq!(html_to_text("mail me @ home"), "mail me @ home");
    }

    #[test]
    fn long_descriptions_are_cut_at_a_word() {
        let long = "word ".repeat(600);
        let (text, shortened) = fit_description(&long);
        assert!(shortened);
        assert!(text.chars().count() <= MAX_DESCRIPTION_CHARS);
        assert!(text.ends_with("word…"), "{}", &text[text.len() - 20..]);
        assert_eq!(fit_description("short"), ("short".to_string(), false));
    }

    #[test]
    fn documents_are_recognised_by_shape() {
        let actor =
            json!({"name": "Goblin", "type": "npc", "system": {"details": {"biography": {"value": "<p>Sneaky</p>"}}}});
        let item = json!({"name": "Longsword", "type": "weapon", "system": {"description": {"value": "<p>Sharp</p>"}}});
        let journal = json!({"name": "History", "pages": [
            {"name": "History", "type": "text", "text": {"content": "<p>Long ago</p>"}},
            {"name": "Map", "type": "image", "src": "map.webp"},
            {"name": "Later", "type": "text", "text": {"content": "<p>Then</p>"}}
        ]});
        let legacy = json!({"name": "Old notes", "content": "<p>Legacy</p>"});
        let list = json!([actor, item, journal, legacy]);
        let export = documents(&list).unwrap();
        let converted: Vec<Converted> = export.documents.iter().map(|d| d.to_entity().unwrap()).collect();
        let kinds: Vec<EntityKind> = converted.iter().map(|c| c.entity.kind).collect();
        assert_eq!(
            kinds,
            [EntityKind::Npc, EntityKind::Item, EntityKind::Lore, EntityKind::Lore]
        );
        assert_eq!(converted[0].entity.description, "Sneaky");
        assert_eq!(converted[0].entity.tags, ["npc"]);
        assert_eq!(converted[1].entity.tags, ["weapon"]);
        assert_eq!(converted[2].entity.description, "Long ago\nLater\nThen");
        assert_eq!(converted[3].entity.description, "Legacy");
    }

    #[test]
    fn bundles_use_their_keys_and_report_skipped_ones() {
        let bundle = json!({
            "actors": [{"name": "Sildar", "system": {}}],
            "items": [{"name": "Potion"}],
            "journal": [{"name": "Rumours"}],
            "scenes": []
        });
        let export = documents(&bundle).unwrap();
        assert_eq!(export.skipped_keys, ["scenes"]);
        let kinds: Vec<EntityKind> = export
            .documents
            .iter()
            .map(|d| d.to_entity().unwrap().entity.kind)
            .collect();
        assert_eq!(kinds, [EntityKind::Npc, EntityKind::Item, EntityKind::Lore]);
        assert_eq!(export.documents[1].label(), "items entry 1 (\"Potion\")");
        // An actor with embedded items is a document, not a bundle.
        let actor = json!({"name": "Hero", "items": [{"name": "Sword"}]});
        let export = documents(&actor).unwrap();
        assert_eq!(export.documents.len(), 1);
        assert_eq!(export.documents[0].to_entity().unwrap().entity.kind, EntityKind::Npc);
    }

    #[test]
    fn bad_documents_say_what_is_wrong() {
        let list = json!([{"type": "npc"}, {"name": "Blob"}, 3, {"name": "x".repeat(101), "content": ""}]);
        let export = documents(&list).unwrap();
        let errors: Vec<String> = export.documents.iter().map(|d| d.to_entity().unwrap_err()).collect();
        assert!(errors[0].contains("no `name`"), "{}", errors[0]);
        assert!(
            errors[1].contains("not a Foundry actor, item or journal entry"),
            "{}",
            errors[1]
        );
        assert!(errors[2].contains("not a JSON object"), "{}", errors[2]);
        assert!(errors[3].contains("101 characters"), "{}", errors[3]);
        assert!(documents(&json!("text")).is_err());
        assert!(documents(&json!({"actors": 5}))
            .unwrap_err()
            .contains("`actors` must be a list"));
    }
}
