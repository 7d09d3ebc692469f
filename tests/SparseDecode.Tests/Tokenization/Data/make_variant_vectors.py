"""Parity vectors beyond the fixtures: adversarial texts (surrogate pairs, combining marks, odd whitespace,
special-token look-alikes) encoded by Hugging Face `tokenizers` with the three fixture tokenizers and with
variants of them (Metaspace pre-tokenizer schemes, added-token flags, Split behaviors, Qwen2's regex, ...).

Writes OUTDIR/hf-variants.json.gz: {"texts": [...], "variants": {name: {"base": fixture folder,
"overrides": {top-level key or "model.<key>": value}, "vectors": [[ids, ids_with_special, decoded or null when
equal to the text, decoded_skip_special or null when equal to decoded], ...]}}}.

usage (repository root, with tokenizers installed): python3 tests/SparseDecode.Tests/Tokenization/Data/make_variant_vectors.py OUTDIR
"""
import copy, gzip, json, os, random, sys
import tokenizers
from tokenizers import Tokenizer
print("tokenizers", tokenizers.__version__)
root = "tests/SparseDecode.Tests/Fixtures/tokenizers"
out = sys.argv[1]
rng = random.Random(7)
pools = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  ", "\t", "\n", "\r\n", "\r",
    ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`", "'s", "'S", "'ll", "'LL", "'ſ", "ſ", "K", "éèêëçàâîïôûüÿœæ", "ñ", "ß", "ẞ", "İı",
    "\u0301\u0308\u0327", "日本語中文한국어", "αβγΔΣσς", "русский", "עברית", "العربية", "हिन्दी", "ไทย",
    "\u00a0", "\u2009", "\u3000", "\u200b", "\u200d", "\u2028", "\u0085", "\x0b\x0c",
    "👍", "🏽", "😀", "🇫🇷", "👩‍👩‍👧", "𝐀𝐁𝐜", "𝟏𝟐𝟑𝟒𝟓", "𠀀𠀁", "\U0001F9D1\u200D\U0001F4BB", "①②", "½", "Ⅻ", "²",
    "e\u0301\u0327", "\u1100\u1161\u11A8", "\uAC00\u11A8", "\u212B", "\uFB01", "\uFF76\uFF9E", "\u1E9B\u0323", "\u00C5\u0328",
    "\u0F73", "\u2126", "\U0001D7D8\U0001D7D9", "\uFE64", "\u3300",
    "<|endoftext|>", "<|pad|>", "<s>", "</s>", "<unk>", "<0x41>", "▁", "▁▁", "Ġ", "hello", "world", "the", " the", "def", "return",
]
def rand_text():
    n = rng.choice([1, 2, 3, 5, 8, 13, 30])
    return "".join(rng.choice(pools) for _ in range(n))
texts = [rand_text() for _ in range(600)]
texts += [" " * 300 + "x", "\n" * 50, "12345678901234567890", "😀" * 50, "ab" * 400]

def vecs(tok):
    res = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        decoded = tok.decode(ids, skip_special_tokens=False)
        skipped = tok.decode(ids, skip_special_tokens=True)
        res.append([ids, tok.encode(t, add_special_tokens=True).ids, None if decoded == t else decoded,
                    None if skipped == decoded else skipped])
    return res

variants = {}  # name -> (base folder, tokenizer json)
base = {n: json.load(open(f"{root}/{n}/tokenizer.json", encoding="utf-8")) for n in ["byte-level", "sentencepiece-bpe", "gpt2-bytelevel"]}
for n, j in base.items():
    variants[n] = (n, j)
sp = base["sentencepiece-bpe"]
def metaspace(scheme, split):
    j = copy.deepcopy(sp); j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}
    j["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}
    return j
for scheme in ["first", "always", "never"]:
    for split in [True, False]:
        variants[f"metaspace-{scheme}-{split}"] = ("sentencepiece-bpe", metaspace(scheme, split))
j = copy.deepcopy(sp)
j["added_tokens"] += [
    {"id": 3, "content": "<0x00>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": False}]
j["added_tokens"] += [{"id": len(j["model"]["vocab"]) + i, "content": c, "single_word": sw, "lstrip": ls, "rstrip": rs, "normalized": nm, "special": sp_}
    for i, (c, sw, ls, rs, nm, sp_) in enumerate([("hello", True, False, False, False, False), ("<|pad|>", False, True, True, False, True),
        ("world", False, False, False, True, False), ("the", False, True, False, False, True)])]
variants["sp-added-flags"] = ("sentencepiece-bpe", j)
j = copy.deepcopy(base["byte-level"])
j["added_tokens"] += [{"id": len(j["model"]["vocab"]) + i, "content": c, "single_word": sw, "lstrip": ls, "rstrip": rs, "normalized": nm, "special": sp_}
    for i, (c, sw, ls, rs, nm, sp_) in enumerate([("hello", True, False, False, False, False), ("é", False, False, False, True, False),
        (" the", False, False, False, False, False), ("日本", False, True, True, False, True)])]
variants["bl-added-flags"] = ("byte-level", j)
j = copy.deepcopy(base["gpt2-bytelevel"]); j["pre_tokenizer"]["add_prefix_space"] = True
variants["gpt2-prefix-space"] = ("gpt2-bytelevel", j)
j = copy.deepcopy(base["byte-level"]); j["model"]["ignore_merges"] = False
variants["bl-no-ignore-merges"] = ("byte-level", j)
j = copy.deepcopy(base["byte-level"])
j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
variants["qwen2-regex"] = ("byte-level", j)
for b in ["Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
    for inv in [False, True]:
        j = copy.deepcopy(base["gpt2-bytelevel"])
        j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": r"\s+|\p{N}"}, "behavior": b, "invert": inv},
                                                                   {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
        variants[f"split-{b}-{inv}"] = ("gpt2-bytelevel", j)

j = copy.deepcopy(sp)
j["normalizer"]["normalizers"] = [{"type": "Strip", "strip_left": True, "strip_right": True},
                                  {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}] + j["normalizer"]["normalizers"]
variants["sp-strip-regex-replace"] = ("sentencepiece-bpe", j)
for fuse in [True, False]:
    j = copy.deepcopy(sp); j["model"]["byte_fallback"] = False; j["model"]["fuse_unk"] = fuse
    variants[f"sp-unk-fuse-{fuse}"] = ("sentencepiece-bpe", j)
j = copy.deepcopy(base["byte-level"])
j["post_processor"] = {"type": "Sequence", "processors": [
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}, j["post_processor"]]}
variants["bl-postprocessor-sequence"] = ("byte-level", j)

for form in ["NFC", "NFKC", "NFD", "NFKD"]:
    j = copy.deepcopy(base["byte-level"]); j["normalizer"] = {"type": form}
    variants[f"bl-{form}"] = ("byte-level", j)
j = copy.deepcopy(sp)
j["normalizer"]["normalizers"] = [{"type": "NFKC"}] + j["normalizer"]["normalizers"]
variants["sp-nfkc"] = ("sentencepiece-bpe", j)
for name, pre in [("digits-individual", {"type": "Digits", "individual_digits": True}),
                  ("digits-contiguous", {"type": "Digits", "individual_digits": False}),
                  ("whitespace-split", {"type": "WhitespaceSplit"}),
                  ("punctuation", {"type": "Punctuation", "behavior": "Isolated"}),
                  ("punctuation-merged", {"type": "Punctuation", "behavior": "MergedWithPrevious"})]:
    j = copy.deepcopy(base["gpt2-bytelevel"])
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [pre, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    variants[name] = ("gpt2-bytelevel", j)

# Word-suffix and subword-prefix BPE, trained here on the texts themselves (vocabularies of their own, so these
# variants are stored whole: their overrides replace the model of the gpt2-bytelevel fixture).
from tokenizers import models, pre_tokenizers, decoders, trainers
for name, kw, dec in [("suffix-bpe", {"end_of_word_suffix": "</w>"}, decoders.BPEDecoder(suffix="</w>")),
                      ("prefix-bpe", {"continuing_subword_prefix": "##"}, None)]:
    t = Tokenizer(models.BPE(unk_token="[UNK]", **kw))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if dec is not None:
        t.decoder = dec
    t.train_from_iterator(texts[:300], trainers.BpeTrainer(vocab_size=400, special_tokens=["[UNK]"], show_progress=False, **kw))
    variants[name] = ("gpt2-bytelevel", json.loads(t.to_str()))

def overrides(j, b):
    o = {}
    for k in sorted(set(j) | set(b)):
        if k == "model":
            for mk in sorted(set(j[k]) | set(b[k])):
                if j[k].get(mk) != b[k].get(mk):
                    o["model." + mk] = j[k].get(mk)
        elif j.get(k) != b.get(k):
            o[k] = j.get(k)
    return o

result = {}
for name, (base_name, j) in variants.items():
    tok = Tokenizer.from_str(json.dumps(j))
    result[name] = {"base": base_name, "overrides": overrides(j, base[base_name]), "vectors": vecs(tok)}
    print(name, "ok", flush=True)
os.makedirs(out, exist_ok=True)
path = os.path.join(out, "hf-variants.json.gz")
with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as f:
    json.dump({"tokenizers_version": tokenizers.__version__, "texts": texts, "variants": result}, f, ensure_ascii=False,
              separators=(",", ":"))
print("written", os.path.getsize(path))
