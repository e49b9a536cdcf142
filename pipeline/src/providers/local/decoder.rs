//! Whisper's text decoder with a key/value cache.
//!
//! candle's Whisper decoder runs the whole token sequence again at every
//! step (it caches only the cross-attention), so decoding costs grow with
//! the square of the transcript's length. This one keeps each layer's
//! self-attention keys and values: every step reads only the new token, and
//! the prompt (keywords, previous chunk) is read once.

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor, D};
use candle_nn::{LayerNorm, Linear};

/// The decoder's weights, shared by every utterance.
#[derive(Clone)]
pub(crate) struct Decoder {
    embeddings: Tensor,
    positions: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
    heads: usize,
}

#[derive(Clone)]
struct Block {
    self_ln: LayerNorm,
    self_q: Linear,
    self_k: Linear,
    self_v: Linear,
    self_out: Linear,
    cross_ln: LayerNorm,
    cross_q: Linear,
    cross_k: Linear,
    cross_v: Linear,
    cross_out: Linear,
    mlp_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// One utterance's decoding state: the cached keys and values and how many tokens were read.
pub(crate) struct DecoderState {
    self_kv: Vec<Option<(Tensor, Tensor)>>,
    cross_kv: Vec<(Tensor, Tensor)>,
    position: usize,
}

impl DecoderState {
    /// Tokens read so far.
    pub(crate) fn position(&self) -> usize {
        self.position
    }
}

fn get(tensors: &HashMap<String, Tensor>, name: &str) -> Result<Tensor> {
    tensors
        .get(name)
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg(format!("the model has no tensor {name}")))
}

fn linear(tensors: &HashMap<String, Tensor>, name: &str, bias: bool) -> Result<Linear> {
    let weight = get(tensors, &format!("{name}.weight"))?;
    let bias = if bias {
        Some(get(tensors, &format!("{name}.bias"))?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

fn layer_norm(tensors: &HashMap<String, Tensor>, name: &str) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        get(tensors, &format!("{name}.weight"))?,
        get(tensors, &format!("{name}.bias"))?,
        1e-5,
    ))
}

impl Decoder {
    /// Builds the decoder from candle-named tensors (`model.decoder.*`).
    pub(crate) fn new(tensors: &HashMap<String, Tensor>, layers: usize, heads: usize) -> Result<Self> {
        let p = "model.decoder";
        let blocks = (0..layers)
            .map(|i| {
                let b = format!("{p}.layers.{i}");
                Ok(Block {
                    self_ln: layer_norm(tensors, &format!("{b}.self_attn_layer_norm"))?,
                    self_q: linear(tensors, &format!("{b}.self_attn.q_proj"), true)?,
                    self_k: linear(tensors, &format!("{b}.self_attn.k_proj"), false)?,
                    self_v: linear(tensors, &format!("{b}.self_attn.v_proj"), true)?,
                    self_out: linear(tensors, &format!("{b}.self_attn.out_proj"), true)?,
                    cross_ln: layer_norm(tensors, &format!("{b}.encoder_attn_layer_norm"))?,
                    cross_q: linear(tensors, &format!("{b}.encoder_attn.q_proj"), true)?,
                    cross_k: linear(tensors, &format!("{b}.encoder_attn.k_proj"), false)?,
                    cross_v: linear(tensors, &format!("{b}.encoder_attn.v_proj"), true)?,
                    cross_out: linear(tensors, &format!("{b}.encoder_attn.out_proj"), true)?,
                    mlp_ln: layer_norm(tensors, &format!("{b}.final_layer_norm"))?,
                    fc1: linear(tensors, &format!("{b}.fc1"), true)?,
                    fc2: linear(tensors, &format!("{b}.fc2"), true)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: get(tensors, &format!("{p}.embed_tokens.weight"))?,
            positions: get(tensors, &format!("{p}.embed_positions.weight"))?,
            blocks,
            ln: layer_norm(tensors, &format!("{p}.layer_norm"))?,
            heads,
        })
    }

    /// Most tokens one utterance chunk can hold.
    pub(crate) fn context(&self) -> usize {
        self.positions.dim(0).unwrap_or(0)
    }

    /// A fresh state attending to the encoder's `features` (1, frames, width).
    pub(crate) fn start(&self, features: &Tensor) -> Result<DecoderState> {
        let cross_kv = self
            .blocks
            .iter()
            .map(|b| {
                Ok((
                    self.split_heads(&b.cross_k.forward(features)?)?,
                    self.split_heads(&b.cross_v.forward(features)?)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderState {
            self_kv: vec![None; self.blocks.len()],
            cross_kv,
            position: 0,
        })
    }

    /// (1, n, width) → (1, heads, n, width / heads)
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, width) = x.dims3()?;
        x.reshape((b, n, self.heads, width / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let head_width = q.dim(D::Minus1)?;
        let scale = 1.0 / (head_width as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let (b, _, n, _) = q.dims4()?;
        weights
            .matmul(v)?
            .transpose(1, 2)?
            .reshape((b, n, head_width * self.heads))
    }

    /// Reads `tokens` after those already read; returns their hidden states (1, n, width).
    pub(crate) fn step(&self, state: &mut DecoderState, tokens: &[u32]) -> Result<Tensor> {
        let n = tokens.len();
        let start = state.position;
        if n == 0 || start + n > self.context() {
            return Err(candle_core::Error::Msg(format!(
                "{} tokens after {start} do not fit the decoder's {} positions",
                n,
                self.context()
            )));
        }
        let device = Device::Cpu;
        let ids = Tensor::new(tokens, &device)?;
        let mut x = self
            .embeddings
            .index_select(&ids, 0)?
            .broadcast_add(&self.positions.narrow(0, start, n)?)?
            .unsqueeze(0)?;
        // New token i may see cached tokens and new tokens up to itself.
        let mask = if n > 1 {
            let values: Vec<f32> = (0..n)
                .flat_map(|i| (0..start + n).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            Some(Tensor::from_vec(values, (n, start + n), &device)?)
        } else {
            None
        };
        for (i, block) in self.blocks.iter().enumerate() {
            let h = block.self_ln.forward(&x)?;
            let q = self.split_heads(&block.self_q.forward(&h)?)?;
            let k = self.split_heads(&block.self_k.forward(&h)?)?;
            let v = self.split_heads(&block.self_v.forward(&h)?)?;
            let (k, v) = match &state.self_kv[i] {
                Some((ck, cv)) => (Tensor::cat(&[ck, &k], 2)?, Tensor::cat(&[cv, &v], 2)?),
                None => (k, v),
            };
            let attended = self.attention(&q, &k, &v, mask.as_ref())?;
            state.self_kv[i] = Some((k, v));
            x = (x + block.self_out.forward(&attended)?)?;

            let h = block.cross_ln.forward(&x)?;
            let q = self.split_heads(&block.cross_q.forward(&h)?)?;
            let (ck, cv) = &state.cross_kv[i];
            let attended = self.attention(&q, ck, cv, None)?;
            x = (x + block.cross_out.forward(&attended)?)?;

            let h = block.mlp_ln.forward(&x)?;
            x = (&x + block.fc2.forward(&block.fc1.forward(&h)?.gelu_erf()?)?)?;
        }
        state.position += n;
        self.ln.forward(&x)
    }

    /// Logits over the vocabulary for position `at` of `hidden` (1, n, width).
    pub(crate) fn logits(&self, hidden: &Tensor, at: usize) -> Result<Tensor> {
        let row = hidden.i((0, at..at + 1))?;
        row.matmul(&self.embeddings.t()?)?.squeeze(0)?.to_dtype(DType::F32)
    }
}
