import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from conftest import make_unet
from videoldm.data.synthetic.driving import DRIVING_ATTRIBUTES
from videoldm.models.conditioning import AttributeConditioner, TextConditioner, make_text_encoder, train_tokenizer

CAPTIONS = [
    "A red ball bounces from left to right.",
    "driving on a highway at night, heavy traffic, 20 m/s",
    "driving on a highway at day, light traffic, 31 m/s",
    "Two blue squares drift apart",
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CAPTIONS, vocab_extra=["a purple zebra"], max_length=12)


@pytest.fixture(scope="module")
def conditioner(tokenizer):
    torch.manual_seed(0)
    return TextConditioner(tokenizer, make_text_encoder(tokenizer, hidden_size=32, layers=2, heads=4,
                                                        max_length=12)).eval()


def test_tokenizer_round_trip_unknown_words_and_padding(tokenizer):
    ids = tokenizer("A RED ball bounces, elephant!", padding="max_length", truncation=True, max_length=12).input_ids
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens == ["<|startoftext|>", "a", "red", "ball", "bounces", ",", "<unk>", "<unk>", "<|endoftext|>",
                      "<pad>", "<pad>", "<pad>"]
    assert tokenizer.decode(ids, skip_special_tokens=True).split() == ["a", "red", "ball", "bounces", ","]
    assert tokenizer("elephant").input_ids[1] == tokenizer.unk_token_id
    assert tokenizer("purple zebra").input_ids[1:3] != [tokenizer.unk_token_id] * 2  # vocab_extra words are known
    long = tokenizer(" ".join(["ball"] * 40), padding="max_length", truncation=True, max_length=12).input_ids
    assert len(long) == 12 and long[-1] == tokenizer.eos_token_id  # truncation keeps EOS
    assert len({tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}) == 4
    assert tokenizer.model_max_length == 12


def test_tokenizer_is_deterministic_and_save_load(tokenizer, tmp_path):
    again = train_tokenizer(CAPTIONS, vocab_extra=["a purple zebra"], max_length=12)
    assert again.get_vocab() == tokenizer.get_vocab()
    tokenizer.save_pretrained(tmp_path)
    from transformers import PreTrainedTokenizerFast

    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path, local_files_only=True)
    batch = CAPTIONS + ["", "unknown words here"]
    assert loaded(batch, padding="max_length").input_ids == tokenizer(batch, padding="max_length").input_ids
    assert loaded.model_max_length == 12


def test_text_encoder_pools_at_eos(tokenizer, conditioner):
    enc = conditioner.text_encoder
    assert (enc.config.vocab_size, enc.config.pad_token_id, enc.config.bos_token_id, enc.config.eos_token_id) == (
        len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    ids = conditioner.tokenize(["a red ball", "two blue squares drift apart", ""])
    eos_pos = (ids == tokenizer.eos_token_id).int().argmax(1)
    assert eos_pos.tolist() == [4, 6, 1]
    assert (ids.argmax(1) != eos_pos).any()  # the legacy argmax(input_ids) pooling would read another token
    with torch.no_grad():
        out = enc(ids)
    assert torch.equal(out.pooler_output, out.last_hidden_state[torch.arange(3), eos_pos])


def test_text_conditioner_encode_null_and_mismatch(tokenizer, conditioner):
    with torch.no_grad():
        tokens = conditioner.encode(CAPTIONS)
        null = conditioner.null(len(CAPTIONS))
        assert tokens.shape == (4, 12, 32) and null.shape == (4, 12, 32)
        assert torch.equal(conditioner.encode([""] * 2), null[:2])
        assert torch.equal(conditioner.encode(CAPTIONS, drop_prob=1.0), null)
        assert not torch.allclose(tokens[0], null[0])
    mismatched = make_text_encoder(tokenizer, hidden_size=16, layers=1, heads=2, max_length=12)
    mismatched.config.eos_token_id = tokenizer.eos_token_id + 1
    with pytest.raises(ValueError, match="eos_token_id"):
        TextConditioner(tokenizer, mismatched)


def test_text_dropout_rate_and_reproducibility(conditioner):
    captions = [CAPTIONS[i % 4] for i in range(3000)]
    with torch.no_grad():
        tokens = conditioner.encode(captions, drop_prob=0.3, generator=torch.Generator().manual_seed(0))
        again = conditioner.encode(captions, drop_prob=0.3, generator=torch.Generator().manual_seed(0))
        null = conditioner.null(1)
    dropped = (tokens == null).flatten(1).all(1).float().mean().item()
    assert abs(dropped - 0.3) < 0.035
    assert torch.equal(tokens, again)


def test_text_conditioner_save_load(conditioner, tmp_path):
    conditioner.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    assert (tmp_path / "text_encoder" / "model.safetensors").is_file()
    loaded = TextConditioner.from_pretrained(tmp_path).eval()
    batch = CAPTIONS + ["", "a purple elephant"]
    with torch.no_grad():
        assert torch.equal(loaded.encode(batch), conditioner.encode(batch))


DRIVING = [{"daytime": "day", "crowdedness": "low"}, {"daytime": "night", "crowdedness": "high"},
           {"daytime": "night", "crowdedness": "medium"}, {"daytime": "day", "crowdedness": "high"}]


def test_attribute_tokens_shapes_values_and_null():
    torch.manual_seed(0)
    cond = AttributeConditioner(DRIVING_ATTRIBUTES, num_tokens=2, dim=16)
    assert cond.config.attributes == DRIVING_ATTRIBUTES
    tokens = cond(DRIVING)
    assert tokens.shape == (4, 4, 16) and cond.null(4).shape == (4, 4, 16)
    # Token order is sorted by name: crowdedness (tokens 0-1), daytime (2-3).
    assert torch.equal(tokens[1, :2], tokens[3, :2]) and not torch.equal(tokens[0, :2], tokens[1, :2])
    assert torch.equal(tokens[1, 2:], tokens[2, 2:]) and not torch.equal(tokens[0, 2:], tokens[1, 2:])
    partial = cond([{"daytime": "night"}, {}])
    assert torch.equal(partial[0, 2:], tokens[1, 2:]) and torch.equal(partial[0, :2], cond.null(1)[0, :2])
    assert torch.equal(partial[1], cond.null(1)[0])
    assert torch.equal(cond(DRIVING, drop_prob=1.0), cond.null(4))
    with pytest.raises(ValueError, match="unknown value 'dusk'"):
        cond([{"daytime": "dusk"}])
    # a manifest's other keys are ignored; a dict of only unknown keys would be the null prompt in disguise
    assert torch.equal(cond([{"daytime": "night", "num_cars": 3}]), cond([{"daytime": "night"}]))
    with pytest.raises(ValueError, match=r"none of the attributes \['weather'\].*crowdedness, daytime"):
        cond([{"weather": "rain"}])
    with pytest.raises(ValueError, match="attribute 'x'"):
        AttributeConditioner({"x": {"range": [1, 1]}})


def test_attribute_dropout_is_independent_per_attribute():
    cond = AttributeConditioner(DRIVING_ATTRIBUTES, dim=8)
    with torch.no_grad():
        tokens = cond(DRIVING * 1000, drop_prob=0.4, generator=torch.Generator().manual_seed(0))
        null = cond.null(1)
    dropped = (tokens == null).all(-1)  # (B, 2): per attribute
    rates = dropped.float().mean(0)
    assert torch.allclose(rates, torch.tensor([0.4, 0.4]), atol=0.035)
    assert abs(dropped.all(1).float().mean().item() - 0.16) < 0.03


def test_attribute_scalars_save_load_and_gradients(tmp_path):
    spec = {"num_cars": {"range": [0, 9]}, "daytime": {"categories": ["day", "night"]}}
    cond = AttributeConditioner(spec, num_tokens=1, dim=8)
    attrs = [{"num_cars": 1, "daytime": "day"}, {"num_cars": 7, "daytime": "night"}, {"daytime": "day"}]
    tokens = cond(attrs)
    assert not torch.equal(tokens[0, 1], tokens[1, 1])  # numbers map to different tokens
    tokens.sum().backward()
    assert cond.embedders["num_cars"][0].weight.grad.abs().sum() > 0
    assert cond.null_tokens["num_cars"].grad.abs().sum() > 0  # attrs[2] has no num_cars: null token used
    cond.save_pretrained(tmp_path)
    loaded = AttributeConditioner.from_pretrained(tmp_path)
    assert loaded.config.attributes == spec
    with torch.no_grad():
        assert torch.equal(loaded(attrs), cond(attrs))


def test_attributes_of_the_driving_generator_feed_a_unet():
    from videoldm.data.synthetic.driving import CROWDEDNESS, DrivingGenerator

    assert list(CROWDEDNESS) == DRIVING_ATTRIBUTES["crowdedness"]["categories"]
    gen = DrivingGenerator(frames=1, size=(16, 32), seed=0)
    attrs = [gen.sample(i).attributes for i in range(3)]
    cond = AttributeConditioner(DRIVING_ATTRIBUTES, dim=32)
    unet = make_unet()
    with torch.no_grad():
        out = unet(torch.randn(3, 4, 8, 8), 10, cond(attrs)).sample
    assert out.shape == (3, 4, 8, 8) and torch.isfinite(out).all()


def test_every_conditioner_takes_none_as_the_unconditional_prompt():
    """The one protocol of the pipeline, the trainer and the upsampler: ``encode([None])`` is ``null(1)``,
    and ``encode_prompts`` with ``drop`` gives the unconditional tokens where it is True."""
    from videoldm.models.conditioning import encode_prompts

    tokenizer = train_tokenizer(CAPTIONS)
    text = TextConditioner(tokenizer, make_text_encoder(tokenizer, hidden_size=16, layers=1, heads=2)).eval()
    attributes = AttributeConditioner(DRIVING_ATTRIBUTES, dim=16)
    for conditioner, prompt in ((text, CAPTIONS[0]), (attributes, {"daytime": "night", "crowdedness": "low"})):
        with torch.no_grad():
            assert torch.equal(conditioner.encode([None]), conditioner.null(1))
            mixed = encode_prompts(conditioner, [prompt, prompt], drop=[False, True])
            assert torch.equal(mixed[1:], conditioner.null(1))
            assert not torch.equal(mixed[:1], conditioner.null(1))
    assert encode_prompts(None, ["anything"]) is None
    assert (text.batch_key, attributes.batch_key) == ("captions", "attributes")
