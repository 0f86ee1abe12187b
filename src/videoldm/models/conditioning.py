"""Conditioning tokens for the UNet's cross-attention: captions and attributes, one protocol.

A conditioner turns prompts into tokens: ``encode(prompts)`` gives ``(B, L, D)``, where a prompt of
``None`` is the unconditional one (the empty caption, no attribute), the tokens the guidance dropout
trains; ``null(batch)`` gives those alone; ``batch_key`` names the field of a training batch its prompts
come from. The pipeline, the trainer and the upsampler all go through :func:`encode_prompts`.

No hub access here, so the text side of the shipped models is made from the dataset itself: a word-level
tokenizer trained on its captions in milliseconds, and a small ``CLIPTextModel`` sized to it (trained with
the UNet). A Stable Diffusion folder's tokenizer and CLIP text encoder load into the same class.
Attributes (the driving set's day/night and crowdedness) become learned tokens of the same width, so
either kind feeds a UNet exactly like text.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from torch import nn
from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

__all__ = ["AttributeConditioner", "Conditioner", "TextConditioner", "encode_batch", "encode_prompts",
           "make_text_encoder", "train_tokenizer"]


class Conditioner(Protocol):
    batch_key: str  # "captions" or "attributes": where a training batch holds this conditioner's prompts

    def encode(self, prompts: Sequence) -> torch.Tensor:
        """``(B, L, D)`` tokens; a ``None`` prompt gives the unconditional tokens."""

    def null(self, batch: int) -> torch.Tensor:
        """The unconditional tokens, ``(batch, L, D)``."""


def encode_prompts(conditioner: Conditioner | None, prompts: Sequence, drop: Sequence[bool] | None = None):
    """Tokens for ``prompts`` (None without a conditioner); where ``drop`` is True, the unconditional ones."""
    if conditioner is None:
        return None
    if drop is not None:
        prompts = [None if d else p for p, d in zip(prompts, drop)]
    return conditioner.encode(list(prompts))


def encode_batch(conditioner: Conditioner | None, batch: dict, drop: Sequence[bool] | None = None):
    """Tokens for a training batch: the prompts under the conditioner's ``batch_key`` (captions or attributes)."""
    if conditioner is None:
        return None
    return encode_prompts(conditioner, batch[conditioner.batch_key], drop)


PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>"


def train_tokenizer(captions: Sequence[str], vocab_extra: Sequence[str] = (), max_length: int = 16
                    ) -> PreTrainedTokenizerFast:
    """A lower-cased word-level tokenizer over the words (and punctuation) of ``captions``.

    ``vocab_extra``: further text whose words must be known too (e.g. prompts used only at sampling).
    Unknown words map to ``<unk>``; every sequence is ``<|startoftext|> ... <|endoftext|>``, padded with
    ``<pad>`` (its own id: the text encoder pools at the first EOS, so pad must not equal EOS).
    """
    if max_length < 3:
        raise ValueError(f"max_length must leave room for BOS, a word and EOS (>= 3), got {max_length}")
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words and runs of punctuation
    tok.train_from_iterator([*captions, *vocab_extra], trainers.WordLevelTrainer(special_tokens=[PAD, UNK, BOS, EOS]))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, tok.token_to_id(BOS)), (EOS, tok.token_to_id(EOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK, bos_token=BOS,
                                   eos_token=EOS, model_max_length=max_length, padding_side="right")


def make_text_encoder(tokenizer: PreTrainedTokenizerFast, hidden_size: int = 64, layers: int = 2, heads: int = 4,
                      max_length: int = 16) -> CLIPTextModel:
    """A fresh ``CLIPTextModel`` whose vocabulary and special-token ids are the tokenizer's."""
    if tokenizer.eos_token_id == 2:
        # transformers treats eos_token_id == 2 as an old CLIP config and pools at argmax(input_ids).
        raise ValueError("eos_token_id 2 makes CLIPTextModel pool at the largest token id, not at EOS")
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=4 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return CLIPTextModel(config)


def _drop_mask(batch: int, drop_prob: float, generator: torch.Generator | None) -> torch.Tensor:
    """(batch,) bool on the CPU, True where the condition is dropped; drawn from ``generator`` for resumable runs."""
    if not 0.0 <= drop_prob <= 1.0:
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}")
    if drop_prob == 0.0:
        return torch.zeros(batch, dtype=torch.bool)
    return torch.rand(batch, generator=generator) < drop_prob


class TextConditioner(nn.Module):
    """Captions to ``(B, L, D)`` tokens: the text encoder's last hidden states, as Stable Diffusion uses.

    Dropping a caption means encoding ``""`` (BOS, EOS, pads), the same tokens ``null`` gives, so the
    unconditional model of guided sampling is the one trained by the dropout. ``check_eos=False`` for a
    Stable Diffusion text encoder: old CLIP configs record the EOS id wrongly, and only the pooled output,
    unused here, depends on it.
    """

    batch_key = "captions"

    def __init__(self, tokenizer, text_encoder: CLIPTextModel, check_eos: bool = True):
        super().__init__()
        if check_eos and text_encoder.config.eos_token_id != tokenizer.eos_token_id:
            raise ValueError(f"text encoder eos_token_id {text_encoder.config.eos_token_id} != tokenizer's "
                             f"{tokenizer.eos_token_id}: the pooled output would read the wrong token")
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder

    @property
    def max_length(self) -> int:
        return min(self.tokenizer.model_max_length, self.text_encoder.config.max_position_embeddings)

    @property
    def dim(self) -> int:
        return self.text_encoder.config.hidden_size

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        """``(B, max_length)`` token ids, padded and truncated (EOS kept)."""
        ids = self.tokenizer(list(captions), padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt").input_ids
        return ids.to(self.text_encoder.device)

    def encode(self, captions: Sequence[str], drop_prob: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, L, D)`` tokens; each caption is replaced by ``""`` (as is ``None``) with probability ``drop_prob``."""
        drop = _drop_mask(len(captions), drop_prob, generator).tolist()
        captions = ["" if d or c is None else c for c, d in zip(captions, drop)]
        return self.text_encoder(self.tokenize(captions)).last_hidden_state

    forward = encode

    def null(self, batch: int) -> torch.Tensor:
        """The unconditional tokens (the empty caption), ``(batch, L, D)``."""
        return self.encode([""]).expand(batch, -1, -1)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        self.tokenizer.save_pretrained(os.path.join(directory, "tokenizer"))
        self.text_encoder.save_pretrained(os.path.join(directory, "text_encoder"), safe_serialization=True)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, check_eos: bool = True, **kwargs) -> "TextConditioner":
        """Loads ``tokenizer/`` and ``text_encoder/`` of ``directory`` (local files only): a folder written by
        :meth:`save_pretrained`, or a Stable Diffusion folder; ``kwargs`` go to the text encoder."""
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(directory, "tokenizer"), local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(os.path.join(directory, "text_encoder"), local_files_only=True,
                                                     **kwargs)
        return cls(tokenizer, text_encoder, check_eos)


class AttributeConditioner(ModelMixin, ConfigMixin):
    """Attributes to ``(B, len(attributes) * num_tokens, dim)`` tokens for the UNet's cross-attention.

    Args:
        attributes: name -> ``{"categories": [...]}`` (a learned embedding per category) or
            ``{"range": [low, high]}`` (a number, mapped to [-1, 1] over the range, through a small MLP).
        num_tokens: tokens per attribute.
        dim: token width (the UNet's ``cross_attention_dim``).

    Values come as one dict per sample, as the data sets write them (category names such as ``"night"``,
    or numbers). Each attribute also has a learned null token, used where it is dropped (independently
    per attribute, as the paper drops labels for guidance) or missing from a sample's dict (a ``None``
    prompt: every attribute missing).
    """

    batch_key = "attributes"

    @register_to_config
    def __init__(self, attributes: dict | None = None, num_tokens: int = 1, dim: int = 64):
        super().__init__()
        if not attributes:
            raise ValueError("AttributeConditioner needs at least one attribute")
        self.embedders = nn.ModuleDict()
        for name in sorted(attributes):  # a fixed token order, whatever order the config lists them in
            spec = attributes[name]
            if set(spec) == {"categories"} and len(spec["categories"]) > 0:
                self.embedders[name] = nn.Embedding(len(spec["categories"]), num_tokens * dim)
            elif set(spec) == {"range"} and len(spec["range"]) == 2 and spec["range"][1] > spec["range"][0]:
                self.embedders[name] = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, num_tokens * dim))
            else:
                raise ValueError(f"attribute {name!r}: expected {{'categories': [...]}} or {{'range': [low, high]}} "
                                 f"with high > low, got {spec!r}")
        self.null_tokens = nn.ParameterDict(
            {name: nn.Parameter(torch.randn(num_tokens, dim)) for name in self.embedders})  # nn.Embedding's scale

    def _values(self, name: str, attributes: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """The attribute's model inputs (category indices or normalised numbers) and a mask of missing ones."""
        spec = self.config.attributes[name]
        raw = [(a or {}).get(name) for a in attributes]
        missing = torch.tensor([v is None for v in raw], dtype=torch.bool)
        if "categories" in spec:
            categories = list(spec["categories"])
            for v in raw:
                if v is not None and v not in categories:
                    raise ValueError(f"attribute {name!r}: unknown value {v!r}; known: {categories}")
            return torch.tensor([0 if v is None else categories.index(v) for v in raw]), missing
        low, high = spec["range"]
        x = torch.tensor([0.0 if v is None else (float(v) - low) / (high - low) * 2 - 1 for v in raw])
        return x[:, None], missing

    def encode(self, attributes: Sequence[dict], drop_prob: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, A * num_tokens, dim)`` tokens; each attribute is dropped with probability ``drop_prob``.

        Keys the model was not trained on are ignored (manifests hold more, e.g. a car count), but a dict
        with none of its attributes is an error: it would silently be the unconditional prompt."""
        for a in attributes:
            if a and not set(a) & set(self.embedders):
                raise ValueError(f"none of the attributes {sorted(a)} is one this model knows: "
                                 f"{', '.join(self.embedders)} (an empty dict asks for none)")
        n, dim, tokens = self.config.num_tokens, self.config.dim, []
        for name, embedder in self.embedders.items():
            values, missing = self._values(name, attributes)
            null = missing | _drop_mask(len(attributes), drop_prob, generator)
            values = values.to(self.device, self.dtype) if values.is_floating_point() else values.to(self.device)
            emb = embedder(values).view(len(attributes), n, dim)
            tokens.append(torch.where(null.to(self.device)[:, None, None], self.null_tokens[name], emb))
        return torch.cat(tokens, dim=1)

    def forward(self, attributes: Sequence[dict], drop_prob: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
        return self.encode(attributes, drop_prob, generator)

    def null(self, batch: int) -> torch.Tensor:
        """Every attribute's null token, ``(batch, A * num_tokens, dim)``."""
        return torch.cat([self.null_tokens[name] for name in self.embedders], dim=0).expand(batch, -1, -1)
