//! The BERT encoder all-MiniLM-L6-v2 is (a `BertModel` of Hugging Face's transformers,
//! inference only), on candle's CPU tensors.
//!
//! Only what the sentence embedding needs: embeddings, the encoder layers and an
//! attention mask for a padded batch; no pooler, no dropout. The weight names are those
//! of the checkpoint (`embeddings.*`, `encoder.layer.N.*`, without a `bert.` prefix).

use candle_core::{DType, Device, Module as _, Result, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The fields of `config.json` the encoder uses.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) max_position_embeddings: usize,
    pub(crate) type_vocab_size: usize,
    pub(crate) layer_norm_eps: f64,
    /// Only `gelu` (the exact, erf form) is supported: it is what the checkpoint uses.
    pub(crate) hidden_act: String,
}

#[derive(Debug)]
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// The encoder with its weights.
#[derive(Debug)]
pub(crate) struct Bert {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_size: usize,
}

impl Bert {
    /// Loads the weights `vb` holds for `config`.
    pub(crate) fn load(vb: VarBuilder<'_>, config: &BertConfig) -> Result<Self> {
        if config.hidden_act != "gelu" {
            candle_core::bail!("unsupported activation {}", config.hidden_act);
        }
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        let e = vb.pp("embeddings");
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let attention = l.pp("attention");
                Ok(Layer {
                    query: linear(hidden, hidden, attention.pp("self.query"))?,
                    key: linear(hidden, hidden, attention.pp("self.key"))?,
                    value: linear(hidden, hidden, attention.pp("self.value"))?,
                    attention_out: linear(hidden, hidden, attention.pp("output.dense"))?,
                    attention_norm: layer_norm(hidden, eps, attention.pp("output.LayerNorm"))?,
                    intermediate: linear(
                        hidden,
                        config.intermediate_size,
                        l.pp("intermediate.dense"),
                    )?,
                    out: linear(config.intermediate_size, hidden, l.pp("output.dense"))?,
                    out_norm: layer_norm(hidden, eps, l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            words: embedding(config.vocab_size, hidden, e.pp("word_embeddings"))?,
            positions: embedding(
                config.max_position_embeddings,
                hidden,
                e.pp("position_embeddings"),
            )?,
            token_types: embedding(
                config.type_vocab_size,
                hidden,
                e.pp("token_type_embeddings"),
            )?,
            embeddings_norm: layer_norm(hidden, eps, e.pp("LayerNorm"))?,
            layers,
            heads: config.num_attention_heads,
            head_size: hidden / config.num_attention_heads,
        })
    }

    /// The last hidden states `(batch, seq, hidden)` of `ids` `(batch, seq)`, u32, whose
    /// `mask` `(batch, seq)` (f32, 1 for a token, 0 for padding) says which positions are
    /// real: padding is neither attended to nor changes the real tokens' states.
    pub(crate) fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, seq as u32, device)?
            .unsqueeze(0)?
            .broadcast_as((batch, seq))?;
        let types = Tensor::zeros((batch, seq), DType::U32, device)?;
        let mut hidden = self
            .words
            .forward(ids)?
            .add(&self.positions.forward(&positions)?)?
            .add(&self.token_types.forward(&types)?)?;
        hidden = self.embeddings_norm.forward(&hidden)?;
        // Additive mask (batch, 1, 1, seq): 0 where attended, a large negative where padded.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((batch, 1, 1, seq))?;
        for layer in &self.layers {
            hidden = self.layer(layer, &hidden, &bias)?;
        }
        Ok(hidden)
    }

    fn layer(&self, layer: &Layer, hidden: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (batch, seq, width) = hidden.dims3()?;
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((batch, seq, self.heads, self.head_size))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(layer.query.forward(hidden)?)?;
        let k = split(layer.key.forward(hidden)?)?;
        let v = split(layer.value.forward(hidden)?)?;
        let scale = 1.0 / (self.head_size as f64).sqrt();
        let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let context = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, seq, width))?;
        let attended = layer
            .attention_norm
            .forward(&(layer.attention_out.forward(&context)? + hidden)?)?;
        let inner = layer.intermediate.forward(&attended)?.gelu_erf()?;
        layer
            .out_norm
            .forward(&(layer.out.forward(&inner)? + attended)?)
    }
}

/// Mean of `hidden` `(batch, seq, width)` over the real tokens of each row (`mask`
/// `(batch, seq)`, f32), as sentence-transformers' mean pooling: `(batch, width)`.
pub(crate) fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
    summed.broadcast_div(&counts)
}

/// The CPU device (the product runs where no GPU is).
pub(crate) fn device() -> Device {
    Device::Cpu
}
