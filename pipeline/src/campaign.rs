//! Campaign files: the NPC roster and the campaign's knowledge (SPEC §6).
//!
//! A campaign file is YAML with three top-level keys: `campaign` (name,
//! system, description), `npcs` (the voiced NPCs) and `entities` (what the
//! NPCs may know about). Parsing is strict: unknown keys, bad entity types
//! and out-of-range values are errors that name the key and its line.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::yaml::{self, Interpolation, Position, YamlError};

/// The campaign compiled into the binary, used when none is configured: a
/// tavern scene with Grimble, the grumpy dwarven innkeeper.
pub const EXAMPLE_CAMPAIGN_YAML: &str = include_str!("../assets/example-campaign.yaml");

/// Longest name of a campaign, NPC or entity, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A whole campaign: its description, voiced NPCs and knowledge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Campaign {
    /// Name, game system and description.
    pub campaign: CampaignInfo,
    /// The voiced NPCs, in file order.
    pub npcs: Vec<NpcDefinition>,
    /// What the campaign's NPCs may know about.
    pub entities: Vec<Entity>,
}

/// The `campaign:` section of a campaign file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignInfo {
    /// Display name, e.g. "Lost Mine".
    pub name: String,
    /// Game system, e.g. "dnd5e"; empty when not given.
    pub system: String,
    /// Free-text description; empty when not given.
    pub description: String,
}

/// One voiced NPC of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NpcDefinition {
    /// The name players address the NPC by.
    pub name: String,
    /// Persona text given to the language model.
    pub personality: String,
    /// How the NPC sounds.
    pub voice: VoiceSpec,
    /// `true`: the NPC answers only when named, never by continuation or as
    /// the only NPC.
    pub address_only: bool,
    /// `true`: the narrator / rules-helper voice (at most one per campaign).
    pub gm_helper: bool,
}

/// The voice of an NPC; omitted fields fall back to the TTS provider's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceSpec {
    /// TTS provider name (e.g. `espeak`, `openai`, `elevenlabs`); `None`
    /// means the configured TTS provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// Provider-specific voice id (e.g. `en-us+m3` for espeak-ng).
    #[serde(default)]
    pub voice_id: Option<String>,
    /// Speaking rate relative to normal, 0.25 to 4.0.
    #[serde(default = "default_speed")]
    pub speed: f32,
    /// Pitch shift relative to the voice's own, -100 to 100 (0 = unchanged).
    #[serde(default)]
    pub pitch: i32,
}

fn default_speed() -> f32 {
    1.0
}

impl Default for VoiceSpec {
    fn default() -> Self {
        Self {
            provider: None,
            voice_id: None,
            speed: default_speed(),
            pitch: 0,
        }
    }
}

/// A piece of campaign knowledge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    /// Name as players would say it; also an STT keyword hint.
    pub name: String,
    /// What kind of thing it is.
    #[serde(rename = "type")]
    pub kind: EntityKind,
    /// What the NPCs know about it.
    #[serde(default)]
    pub description: String,
    /// Free-form labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Extra facts as key/value pairs.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Links to other entities.
    #[serde(default)]
    pub relationships: Vec<Relationship>,
}

/// A link from one entity to another, e.g. Grimble `owns` the Sleeping Giant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relationship {
    /// Name of the other entity.
    pub target: String,
    /// Kind of link, e.g. `owns`, `ally`, `located_in`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The kinds of campaign entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A person or creature.
    Npc,
    /// A place.
    Location,
    /// An object.
    Item,
    /// A group or organisation.
    Faction,
    /// A task or storyline.
    Quest,
    /// Background knowledge.
    Lore,
}

impl EntityKind {
    /// Every kind, in display order.
    pub const ALL: [EntityKind; 6] = [
        EntityKind::Npc,
        EntityKind::Location,
        EntityKind::Item,
        EntityKind::Faction,
        EntityKind::Quest,
        EntityKind::Lore,
    ];

    /// The lower-case name used in files and commands.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Npc => "npc",
            EntityKind::Location => "location",
            EntityKind::Item => "item",
            EntityKind::Faction => "faction",
            EntityKind::Quest => "quest",
            EntityKind::Lore => "lore",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no entity kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entity type {0:?}: expected one of npc, location, item, faction, quest, lore")]
pub struct UnknownEntityKind(pub String);

impl FromStr for EntityKind {
    type Err = UnknownEntityKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        EntityKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == wanted)
            .ok_or_else(|| UnknownEntityKind(s.to_string()))
    }
}

/// Why a campaign file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The file could not be read.
    #[error("cannot read campaign file {path}: {source}")]
    Io {
        /// The file that was asked for.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not a valid campaign; every problem found is listed.
    #[error("{}", format_errors(.source_name, .errors))]
    Invalid {
        /// The file name (or "campaign") for messages.
        source_name: String,
        /// Each problem with its key path and line.
        errors: Vec<YamlError>,
    },
}

fn format_errors(source_name: &str, errors: &[YamlError]) -> String {
    let mut out = format!("invalid campaign {source_name}:");
    for error in errors {
        out.push_str("\n  ");
        out.push_str(&error.to_string());
    }
    out
}

impl Campaign {
    /// The campaign compiled into the binary (a tavern scene with Grimble).
    pub fn example() -> Self {
        match Self::from_yaml(EXAMPLE_CAMPAIGN_YAML, "example campaign") {
            Ok(campaign) => campaign,
            // The bundled file is checked by a unit test; this cannot happen
            // in a released binary, but an empty campaign beats a panic.
            Err(_) => Self {
                campaign: CampaignInfo {
                    name: "Example".into(),
                    system: String::new(),
                    description: String::new(),
                },
                npcs: Vec::new(),
                entities: Vec::new(),
            },
        }
    }

    /// Reads and validates a campaign file.
    pub fn load(path: &Path) -> Result<Self, CampaignError> {
        let text = std::fs::read_to_string(path).map_err(|source| CampaignError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses and validates campaign YAML; `source_name` names it in errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Self, CampaignError> {
        let invalid = |errors| CampaignError::Invalid {
            source_name: source_name.to_string(),
            errors,
        };
        let raw: RawCampaign = yaml::from_str(text, Interpolation::None).map_err(|e| invalid(vec![e]))?;
        raw.validate().map_err(invalid)
    }

    /// The NPC with this name (case-insensitive).
    pub fn npc(&self, name: &str) -> Option<&NpcDefinition> {
        self.npcs.iter().find(|npc| npc.name.eq_ignore_ascii_case(name.trim()))
    }

    /// How many entities there are of each kind.
    pub fn entity_counts(&self) -> BTreeMap<EntityKind, usize> {
        let mut counts = BTreeMap::new();
        for entity in &self.entities {
            *counts.entry(entity.kind).or_insert(0) += 1;
        }
        counts
    }
}

// ---- raw file shape (with positions for cross-field checks) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    campaign: Option<RawInfo>,
    #[serde(default)]
    npcs: Vec<RawNpc>,
    #[serde(default)]
    entities: Vec<RawEntity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInfo {
    name: Spanned<String>,
    #[serde(default)]
    system: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNpc {
    name: Spanned<String>,
    personality: Spanned<String>,
    #[serde(default)]
    voice: Option<Spanned<VoiceSpec>>,
    #[serde(default)]
    address_only: bool,
    #[serde(default)]
    gm_helper: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: EntityKind,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    #[serde(default)]
    relationships: Vec<Relationship>,
}

/// Checks a name and returns it trimmed, or records why it is not acceptable.
fn checked_name(path: String, name: &Spanned<String>, errors: &mut Vec<YamlError>) -> String {
    let trimmed = name.value.trim();
    if trimmed.is_empty() {
        errors.push(YamlError::new(path, "must not be empty", Position::of(name)));
    } else if trimmed.chars().count() > MAX_NAME_CHARS {
        errors.push(YamlError::new(
            path,
            format!("is longer than {MAX_NAME_CHARS} characters"),
            Position::of(name),
        ));
    }
    trimmed.to_string()
}

impl RawCampaign {
    fn validate(self) -> Result<Campaign, Vec<YamlError>> {
        let mut errors = Vec::new();
        let info = match self.campaign {
            Some(info) => CampaignInfo {
                name: checked_name("campaign.name".into(), &info.name, &mut errors),
                system: info.system.trim().to_string(),
                description: info.description.trim().to_string(),
            },
            None => {
                errors.push(YamlError::new(
                    "campaign",
                    "missing: every campaign file needs `campaign: { name: ... }`",
                    None,
                ));
                CampaignInfo {
                    name: String::new(),
                    system: String::new(),
                    description: String::new(),
                }
            }
        };

        let mut npcs = Vec::with_capacity(self.npcs.len());
        let mut seen_npcs: HashMap<String, usize> = HashMap::new();
        let mut gm_helper: Option<usize> = None;
        for (i, raw) in self.npcs.into_iter().enumerate() {
            let name = checked_name(format!("npcs[{i}].name"), &raw.name, &mut errors);
            if let Some(first) = seen_npcs.insert(name.to_lowercase(), i) {
                if !name.is_empty() {
                    errors.push(YamlError::new(
                        format!("npcs[{i}].name"),
                        format!("NPC {name:?} is already defined as npcs[{first}]"),
                        Position::of(&raw.name),
                    ));
                }
            }
            let personality = raw.personality.value.trim().to_string();
            if personality.is_empty() {
                errors.push(YamlError::new(
                    format!("npcs[{i}].personality"),
                    "must not be empty: describe who the NPC is",
                    Position::of(&raw.personality),
                ));
            }
            let voice = match raw.voice {
                Some(voice) => {
                    let position = Position::of(&voice);
                    let voice = voice.value;
                    if !(voice.speed.is_finite() && (0.25..=4.0).contains(&voice.speed)) {
                        errors.push(YamlError::new(
                            format!("npcs[{i}].voice.speed"),
                            format!("{} is out of range: use 0.25 to 4.0 (1.0 = normal)", voice.speed),
                            position,
                        ));
                    }
                    if !(-100..=100).contains(&voice.pitch) {
                        errors.push(YamlError::new(
                            format!("npcs[{i}].voice.pitch"),
                            format!("{} is out of range: use -100 to 100 (0 = unchanged)", voice.pitch),
                            position,
                        ));
                    }
                    voice
                }
                None => VoiceSpec::default(),
            };
            let is_gm_helper = raw.gm_helper.as_ref().is_some_and(|flag| flag.value);
            if is_gm_helper {
                if let Some(first) = gm_helper {
                    errors.push(YamlError::new(
                        format!("npcs[{i}].gm_helper"),
                        format!("only one NPC may be the gm_helper; npcs[{first}] already is"),
                        raw.gm_helper.as_ref().and_then(Position::of),
                    ));
                } else {
                    gm_helper = Some(i);
                }
            }
            npcs.push(NpcDefinition {
                name,
                personality,
                voice,
                address_only: raw.address_only,
                gm_helper: is_gm_helper,
            });
        }

        let mut entities = Vec::with_capacity(self.entities.len());
        let mut seen_entities: HashMap<(String, EntityKind), usize> = HashMap::new();
        for (i, raw) in self.entities.into_iter().enumerate() {
            let name = checked_name(format!("entities[{i}].name"), &raw.name, &mut errors);
            if let Some(first) = seen_entities.insert((name.to_lowercase(), raw.kind), i) {
                if !name.is_empty() {
                    errors.push(YamlError::new(
                        format!("entities[{i}].name"),
                        format!("{} {name:?} is already defined as entities[{first}]", raw.kind),
                        Position::of(&raw.name),
                    ));
                }
            }
            let tags = raw
                .tags
                .iter()
                .map(|tag| tag.trim().to_string())
                .filter(|tag| !tag.is_empty())
                .collect();
            entities.push(Entity {
                name,
                kind: raw.kind,
                description: raw.description.trim().to_string(),
                tags,
                properties: raw.properties,
                relationships: raw.relationships,
            });
        }

        if errors.is_empty() {
            Ok(Campaign {
                campaign: info,
                npcs,
                entities,
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str) -> Vec<String> {
        match Campaign::from_yaml(text, "test.yaml") {
            Ok(_) => panic!("campaign parsed: {text}"),
            Err(CampaignError::Invalid { errors, .. }) => errors.iter().map(ToString::to_string).collect(),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn bundled_example_loads_with_grimble() {
        let campaign = Campaign::from_yaml(EXAMPLE_CAMPAIGN_YAML, "example").unwrap();
        let grimble = campaign.npc("grimble").expect("Grimble is in the example campaign");
        assert!(grimble.personality.contains("dwarven innkeeper"));
        assert!(campaign.npcs.len() >= 2, "the demo needs two NPCs to address");
        assert!(!campaign.entities.is_empty());
        assert_eq!(Campaign::example(), campaign);
    }

    #[test]
    fn defaults_fill_omitted_fields() {
        let campaign = Campaign::from_yaml(
            "campaign: { name: Tiny }\nnpcs:\n  - name: Bart\n    personality: A bard.\nentities:\n  - { name: Town, type: location }\n",
            "t",
        )
        .unwrap();
        let bart = &campaign.npcs[0];
        assert_eq!(bart.voice, VoiceSpec::default());
        assert!(!bart.address_only && !bart.gm_helper);
        assert_eq!(campaign.entities[0].description, "");
        assert!(campaign.entities[0].tags.is_empty());
        assert_eq!(campaign.campaign.system, "");
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let errors =
            errors_of("campaign: { name: X }\nnpcs:\n  - name: Bart\n    personality: A bard.\n    mood: happy\n");
        assert_eq!(errors, ["npcs[0].mood: unknown field `mood`, expected one of name, personality, voice, address_only, gm_helper (line 5, column 5)"]);
    }

    #[test]
    fn bad_entity_type_is_an_error_with_its_line() {
        let errors = errors_of("campaign: { name: X }\nentities:\n  - name: Smaug\n    type: dragon\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("entities[0].type: unknown variant `dragon`"),
            "{}",
            errors[0]
        );
        assert!(errors[0].ends_with("(line 4, column 11)"), "{}", errors[0]);
    }

    #[test]
    fn required_fields_are_reported() {
        let errors = errors_of("campaign: { name: X }\nnpcs:\n  - name: Bart\n");
        assert!(errors[0].contains("missing field `personality`"), "{errors:?}");
        let errors = errors_of("npcs: []\n");
        assert_eq!(
            errors,
            ["campaign: missing: every campaign file needs `campaign: { name: ... }`"]
        );
        let errors = errors_of("campaign: { system: dnd5e }\n");
        assert!(errors[0].contains("missing field `name`"), "{errors:?}");
    }

    #[test]
    fn semantic_errors_are_all_listed_with_lines() {
        let text = "campaign: { name: \"  \" }\nnpcs:\n  - name: Bart\n    personality: A bard.\n    gm_helper: true\n  - name: bart\n    personality: Again.\n    voice: { speed: 9 }\n  - name: Zed\n    personality: \" \"\n    gm_helper: true\n";
        let errors = errors_of(text);
        assert_eq!(
            errors,
            [
                "campaign.name: must not be empty (line 1, column 19)",
                "npcs[1].name: NPC \"bart\" is already defined as npcs[0] (line 6, column 11)",
                "npcs[1].voice.speed: 9 is out of range: use 0.25 to 4.0 (1.0 = normal) (line 8, column 12)",
                "npcs[2].personality: must not be empty: describe who the NPC is (line 10, column 18)",
                "npcs[2].gm_helper: only one NPC may be the gm_helper; npcs[0] already is (line 11, column 16)",
            ]
        );
    }

    #[test]
    fn duplicate_entities_of_same_kind_are_rejected_but_other_kinds_allowed() {
        let ok = Campaign::from_yaml(
            "campaign: { name: X }\nentities:\n  - { name: Grimble, type: npc }\n  - { name: Grimble, type: location }\n",
            "t",
        );
        assert!(ok.is_ok());
        let errors = errors_of(
            "campaign: { name: X }\nentities:\n  - { name: Inn, type: location }\n  - { name: inn, type: location }\n",
        );
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("already defined as entities[0]"));
    }

    #[test]
    fn overlong_name_is_rejected() {
        let text = format!(
            "campaign: {{ name: X }}\nentities:\n  - {{ name: {}, type: lore }}\n",
            "a".repeat(101)
        );
        assert!(errors_of(&text)[0].contains("longer than 100"));
    }

    #[test]
    fn entity_kind_parses_case_insensitively() {
        assert_eq!("Location".parse::<EntityKind>(), Ok(EntityKind::Location));
        assert_eq!(" lore ".parse::<EntityKind>(), Ok(EntityKind::Lore));
        assert!("dragon".parse::<EntityKind>().is_err());
        for kind in EntityKind::ALL {
            assert_eq!(kind.to_string().parse::<EntityKind>(), Ok(kind));
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let err = Campaign::load(Path::new("no/such/campaign.yaml")).unwrap_err();
        assert!(matches!(err, CampaignError::Io { .. }));
        assert!(err.to_string().contains("no/such/campaign.yaml"));
    }

    #[test]
    fn entity_counts_group_by_kind() {
        let campaign = Campaign::from_yaml(
            "campaign: { name: X }\nentities:\n  - { name: A, type: lore }\n  - { name: B, type: lore }\n  - { name: C, type: item }\n",
            "t",
        )
        .unwrap();
        let counts = campaign.entity_counts();
        assert_eq!(counts.get(&EntityKind::Lore), Some(&2));
        assert_eq!(counts.get(&EntityKind::Item), Some(&1));
        assert_eq!(counts.get(&EntityKind::Npc), None);
    }
}
