//! Reading a CTranslate2 Whisper `model.bin` into candle's Whisper layout.
//!
//! The file is a small header (`version`, spec name, revision) followed by
//! named variables (`name`, rank, dims, dtype id, byte count, raw bytes) and
//! aliases. CTranslate2 fuses attention projections (`q|k|v` in
//! `self_attention/linear_0`, `k|v` in the decoder's cross-attention
//! `attention/linear_1`); they are split here, and every name is mapped to
//! the one candle's `whisper::model::Whisper` loads. The model's dimensions
//! are read off the tensors' shapes, so tiny, base and larger conversions
//! load the same way.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::whisper::Config;

use super::LocalEngineError;

/// The only spec this reader understands.
const WHISPER_SPEC: &str = "WhisperSpec";

/// A CTranslate2 variable's element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ct2Type {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Type {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Ct2Type::F32,
            1 => Ct2Type::I8,
            2 => Ct2Type::I16,
            3 => Ct2Type::I32,
            4 => Ct2Type::F16,
            5 => Ct2Type::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Ct2Type::I8 => 1,
            Ct2Type::I16 | Ct2Type::F16 | Ct2Type::Bf16 => 2,
            Ct2Type::F32 | Ct2Type::I32 => 4,
        }
    }
}

/// One variable: shape, type and where its bytes are in the file.
#[derive(Debug, Clone)]
struct Variable {
    shape: Vec<usize>,
    dtype: Ct2Type,
    start: usize,
    len: usize,
}

/// A parsed model file: its variables by name.
pub(crate) struct Ct2File {
    bytes: Vec<u8>,
    variables: BTreeMap<String, Variable>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(slice)
            }
            None => Err(format!(
                "the file is truncated: {n} bytes of {what} needed at offset {}, only {} left",
                self.pos,
                self.bytes.len() - self.pos.min(self.bytes.len())
            )),
        }
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A length-prefixed, NUL-terminated string.
    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.u16(what)? as usize;
        let raw = self.take(len, what)?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

impl Ct2File {
    /// Reads and parses `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, LocalEngineError> {
        let bytes = std::fs::read(path).map_err(|e| LocalEngineError::Format {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(bytes).map_err(|message| LocalEngineError::Format {
            path: path.to_path_buf(),
            message: format!("not a usable CTranslate2 Whisper model: {message}"),
        })
    }

    /// Parses a model file's bytes.
    pub(crate) fn parse(bytes: Vec<u8>) -> Result<Self, String> {
        let mut variables = BTreeMap::new();
        {
            let mut r = Reader { bytes: &bytes, pos: 0 };
            let version = r.u32("the binary version")?;
            if !(5..=6).contains(&version) {
                return Err(format!("unsupported binary version {version} (5 or 6 expected)"));
            }
            let spec = r.string("the spec name")?;
            if spec != WHISPER_SPEC {
                return Err(format!("the model is a {spec:?}, not a {WHISPER_SPEC:?}"));
            }
            let _revision = r.u32("the spec revision")?;
            let count = r.u32("the variable count")?;
            for _ in 0..count {
                let name = r.string("a variable name")?;
                let rank = r.u8("a rank")? as usize;
                let mut shape = Vec::with_capacity(rank);
                for _ in 0..rank {
                    shape.push(r.u32("a dimension")? as usize);
                }
                let dtype_id = r.u8("a type id")?;
                let dtype =
                    Ct2Type::from_id(dtype_id).ok_or_else(|| format!("{name}: unknown element type id {dtype_id}"))?;
                let len = r.u32("a byte count")? as usize;
                let elements: usize = shape.iter().product();
                if elements.checked_mul(dtype.size()) != Some(len) {
                    return Err(format!(
                        "{name}: {len} bytes do not hold a {shape:?} tensor of {}-byte elements",
                        dtype.size()
                    ));
                }
                let start = r.pos;
                r.take(len, &name)?;
                variables.insert(
                    name,
                    Variable {
                        shape,
                        dtype,
                        start,
                        len,
                    },
                );
            }
            // Aliases (e.g. the output projection sharing the embeddings) follow; candle
            // ties those weights itself, so they are read only to check the file's end.
            if r.pos < bytes.len() {
                let aliases = r.u32("the alias count")?;
                for _ in 0..aliases {
                    r.string("an alias")?;
                    r.string("an aliased variable")?;
                }
            }
        }
        if variables.keys().any(|name| name.ends_with("weight_scale")) {
            return Err(
                "int8-quantized models are not supported: convert with --quantization float16 or float32".into(),
            );
        }
        Ok(Self { bytes, variables })
    }

    fn variable(&self, name: &str) -> Result<&Variable, String> {
        self.variables.get(name).ok_or_else(|| format!("{name} is missing"))
    }

    fn shape(&self, name: &str) -> Result<&[usize], String> {
        Ok(&self.variable(name)?.shape)
    }

    /// A scalar integer variable (`num_heads`).
    fn integer(&self, name: &str) -> Option<usize> {
        let v = self.variables.get(name)?;
        let b = self.bytes.get(v.start..v.start + v.len)?;
        match (v.dtype, b.len()) {
            (Ct2Type::I8, 1) => Some(b[0] as usize),
            (Ct2Type::I16, 2) => Some(i16::from_le_bytes([b[0], b[1]]).max(0) as usize),
            (Ct2Type::I32, 4) => Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]).max(0) as usize),
            _ => None,
        }
    }

    /// A tensor as f32 on the CPU.
    fn tensor(&self, name: &str) -> Result<Tensor, LocalEngineError> {
        let v = self
            .variable(name)
            .map_err(|message| LocalEngineError::Config(format!("whisper model: {message}")))?;
        let dtype = match v.dtype {
            Ct2Type::F32 => DType::F32,
            Ct2Type::F16 => DType::F16,
            Ct2Type::Bf16 => DType::BF16,
            other => {
                return Err(LocalEngineError::Config(format!(
                    "whisper model: {name} has element type {other:?}; float tensors expected"
                )))
            }
        };
        let bytes = &self.bytes[v.start..v.start + v.len];
        Tensor::from_raw_buffer(bytes, dtype, &v.shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(LocalEngineError::tensor(format!("whisper model: reading {name}")))
    }

    fn count_layers(&self, prefix: &str) -> usize {
        let mut count = 0;
        while self
            .variables
            .keys()
            .any(|k| k.starts_with(&format!("{prefix}/layer_{count}/")))
        {
            count += 1;
        }
        count
    }

    /// The model's dimensions, read off its tensors.
    pub(crate) fn whisper_config(&self, suppress_tokens: Vec<u32>) -> Result<Config, String> {
        let conv1 = self.shape("encoder/conv1/weight")?;
        let [d_model, n_mels, 3] = conv1 else {
            return Err(format!(
                "encoder/conv1/weight has shape {conv1:?}, expected [d_model, n_mels, 3]"
            ));
        };
        let embeddings = self.shape("decoder/embeddings/weight")?;
        let [vocab_size, width] = embeddings else {
            return Err(format!(
                "decoder/embeddings/weight has shape {embeddings:?}, expected [vocab, d_model]"
            ));
        };
        if width != d_model {
            return Err(format!("decoder width {width} differs from encoder width {d_model}"));
        }
        let positions = |name: &str, default: usize| -> Result<usize, String> {
            match self.variables.get(name) {
                None => Ok(default),
                Some(v) => match v.shape.as_slice() {
                    [n, w] if w == d_model => Ok(*n),
                    other => Err(format!("{name} has shape {other:?}, expected [positions, {d_model}]")),
                },
            }
        };
        let heads = |prefix: &str| {
            self.integer(&format!("{prefix}/num_heads"))
                .filter(|h| *h > 0 && d_model % h == 0)
                .unwrap_or(d_model / 64)
        };
        let config = Config {
            num_mel_bins: *n_mels,
            max_source_positions: positions("encoder/position_encodings/encodings", 1500)?,
            d_model: *d_model,
            encoder_attention_heads: heads("encoder"),
            encoder_layers: self.count_layers("encoder"),
            vocab_size: *vocab_size,
            max_target_positions: positions("decoder/position_encodings/encodings", 448)?,
            decoder_attention_heads: heads("decoder"),
            decoder_layers: self.count_layers("decoder"),
            suppress_tokens,
        };
        if config.encoder_layers == 0 || config.decoder_layers == 0 || d_model % 64 != 0 {
            return Err(format!("implausible dimensions: {config:?}"));
        }
        Ok(config)
    }

    /// Every tensor candle's Whisper needs, under candle's names.
    pub(crate) fn candle_tensors(&self, config: &Config) -> Result<HashMap<String, Tensor>, LocalEngineError> {
        let d = config.d_model;
        let mut out = HashMap::new();
        let mut put = |name: String, tensor: Tensor| {
            out.insert(name, tensor);
        };
        // Splits a fused projection into `parts` equal rows.
        let split = |name: &str, parts: usize| -> Result<Vec<Tensor>, LocalEngineError> {
            let t = self.tensor(name)?;
            let rows = t.dim(0).map_err(LocalEngineError::tensor(name.to_string()))?;
            if rows != parts * d {
                return Err(LocalEngineError::Config(format!(
                    "whisper model: {name} has {rows} rows, expected {parts} x {d} (a fused projection)"
                )));
            }
            (0..parts)
                .map(|i| {
                    t.narrow(0, i * d, d)
                        .map_err(LocalEngineError::tensor(name.to_string()))
                })
                .collect()
        };
        let linear = |put: &mut dyn FnMut(String, Tensor), from: &str, to: &str| -> Result<(), LocalEngineError> {
            put(format!("{to}.weight"), self.tensor(&format!("{from}/weight"))?);
            put(format!("{to}.bias"), self.tensor(&format!("{from}/bias"))?);
            Ok(())
        };
        let norm = |put: &mut dyn FnMut(String, Tensor), from: &str, to: &str| -> Result<(), LocalEngineError> {
            put(format!("{to}.weight"), self.tensor(&format!("{from}/gamma"))?);
            put(format!("{to}.bias"), self.tensor(&format!("{from}/beta"))?);
            Ok(())
        };
        // Fused q|k|v (self-attention): k has no bias in Whisper.
        let qkv = |put: &mut dyn FnMut(String, Tensor), from: &str, to: &str| -> Result<(), LocalEngineError> {
            let w = split(&format!("{from}/weight"), 3)?;
            let b = split(&format!("{from}/bias"), 3)?;
            put(format!("{to}.q_proj.weight"), w[0].clone());
            put(format!("{to}.q_proj.bias"), b[0].clone());
            put(format!("{to}.k_proj.weight"), w[1].clone());
            put(format!("{to}.v_proj.weight"), w[2].clone());
            put(format!("{to}.v_proj.bias"), b[2].clone());
            Ok(())
        };

        let enc = "model.encoder";
        linear(&mut put, "encoder/conv1", &format!("{enc}.conv1"))?;
        linear(&mut put, "encoder/conv2", &format!("{enc}.conv2"))?;
        for i in 0..config.encoder_layers {
            let from = format!("encoder/layer_{i}");
            let to = format!("{enc}.layers.{i}");
            qkv(
                &mut put,
                &format!("{from}/self_attention/linear_0"),
                &format!("{to}.self_attn"),
            )?;
            linear(
                &mut put,
                &format!("{from}/self_attention/linear_1"),
                &format!("{to}.self_attn.out_proj"),
            )?;
            norm(
                &mut put,
                &format!("{from}/self_attention/layer_norm"),
                &format!("{to}.self_attn_layer_norm"),
            )?;
            linear(&mut put, &format!("{from}/ffn/linear_0"), &format!("{to}.fc1"))?;
            linear(&mut put, &format!("{from}/ffn/linear_1"), &format!("{to}.fc2"))?;
            norm(
                &mut put,
                &format!("{from}/ffn/layer_norm"),
                &format!("{to}.final_layer_norm"),
            )?;
        }
        norm(&mut put, "encoder/layer_norm", &format!("{enc}.layer_norm"))?;

        let dec = "model.decoder";
        put(
            format!("{dec}.embed_tokens.weight"),
            self.tensor("decoder/embeddings/weight")?,
        );
        put(
            format!("{dec}.embed_positions.weight"),
            self.tensor("decoder/position_encodings/encodings")?,
        );
        for i in 0..config.decoder_layers {
            let from = format!("decoder/layer_{i}");
            let to = format!("{dec}.layers.{i}");
            qkv(
                &mut put,
                &format!("{from}/self_attention/linear_0"),
                &format!("{to}.self_attn"),
            )?;
            linear(
                &mut put,
                &format!("{from}/self_attention/linear_1"),
                &format!("{to}.self_attn.out_proj"),
            )?;
            norm(
                &mut put,
                &format!("{from}/self_attention/layer_norm"),
                &format!("{to}.self_attn_layer_norm"),
            )?;
            linear(
                &mut put,
                &format!("{from}/attention/linear_0"),
                &format!("{to}.encoder_attn.q_proj"),
            )?;
            let kv_w = split(&format!("{from}/attention/linear_1/weight"), 2)?;
            let kv_b = split(&format!("{from}/attention/linear_1/bias"), 2)?;
            put(format!("{to}.encoder_attn.k_proj.weight"), kv_w[0].clone());
            put(format!("{to}.encoder_attn.v_proj.weight"), kv_w[1].clone());
            put(format!("{to}.encoder_attn.v_proj.bias"), kv_b[1].clone());
            linear(
                &mut put,
                &format!("{from}/attention/linear_2"),
                &format!("{to}.encoder_attn.out_proj"),
            )?;
            norm(
                &mut put,
                &format!("{from}/attention/layer_norm"),
                &format!("{to}.encoder_attn_layer_norm"),
            )?;
            linear(&mut put, &format!("{from}/ffn/linear_0"), &format!("{to}.fc1"))?;
            linear(&mut put, &format!("{from}/ffn/linear_1"), &format!("{to}.fc2"))?;
            norm(
                &mut put,
                &format!("{from}/ffn/layer_norm"),
                &format!("{to}.final_layer_norm"),
            )?;
        }
        norm(&mut put, "decoder/layer_norm", &format!("{dec}.layer_norm"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn variable(out: &mut Vec<u8>, name: &str, shape: &[u32], dtype: u8, data: &[u8]) {
        string(out, name);
        out.push(shape.len() as u8);
        for d in shape {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.push(dtype);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }

    fn header(spec: &str, count: u32) -> Vec<u8> {
        let mut out = 6u32.to_le_bytes().to_vec();
        string(&mut out, spec);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert!(Ct2File::parse(Vec::new()).err().unwrap().contains("truncated"));
        assert!(Ct2File::parse(b"garbage!".to_vec())
            .err()
            .unwrap()
            .contains("binary version"));
        let err = Ct2File::parse(header("TransformerSpec", 0)).err().unwrap();
        assert!(err.contains("not a \"WhisperSpec\""), "{err}");

        let mut file = header(WHISPER_SPEC, 1);
        variable(&mut file, "encoder/conv1/weight", &[4, 2, 3], 4, &[0; 10]);
        assert!(Ct2File::parse(file).err().unwrap().contains("do not hold"));

        let mut file = header(WHISPER_SPEC, 2);
        variable(&mut file, "encoder/conv1/weight", &[4, 2, 3], 4, &[0; 48]);
        let err = Ct2File::parse(file).err().unwrap();
        assert!(err.contains("truncated"), "{err}");

        let mut file = header(WHISPER_SPEC, 1);
        variable(&mut file, "encoder/conv1/weight", &[64, 2], 0, &[0; 512]);
        let parsed = Ct2File::parse(file).unwrap();
        let err = parsed.whisper_config(Vec::new()).err().unwrap();
        assert!(err.contains("expected [d_model, n_mels, 3]"), "{err}");
    }

    #[test]
    fn reads_scalars_and_shapes() {
        let mut file = header(WHISPER_SPEC, 3);
        variable(&mut file, "encoder/num_heads", &[], 2, &6i16.to_le_bytes());
        variable(&mut file, "encoder/conv1/weight", &[64, 2, 3], 4, &[0; 64 * 2 * 3 * 2]);
        variable(&mut file, "decoder/embeddings/weight", &[10, 64], 4, &[0; 10 * 64 * 2]);
        let parsed = Ct2File::parse(file).unwrap();
        assert_eq!(parsed.integer("encoder/num_heads"), Some(6));
        // No layers: a clear error rather than a model that cannot run.
        let err = parsed.whisper_config(Vec::new()).err().unwrap();
        assert!(err.contains("implausible"), "{err}");
        let t = parsed.tensor("decoder/embeddings/weight").unwrap();
        assert_eq!(t.dims(), &[10, 64]);
        assert_eq!(t.dtype(), DType::F32);
    }
}
