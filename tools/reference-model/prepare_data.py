"""Build the reference model's corpus and tokenizer from text installed on this machine.

Corpus: the Python source files of the installed packages (real code with long-range identifier reuse),
deduplicated by content, split into train / held-out by a hash of the content (so the split is stable).
Tokenizer: byte-level BPE (Llama-3-style split regex, then byte-level mapping), ~8K vocabulary.
Writes: tokenizer.json, train.u16 / heldout.u16 (token ids, documents separated by <|endoftext|>),
heldout.txt (held-out documents, separated by <|endoftext|>).

usage: python prepare_data.py OUTDIR [--max-mb 320] [--vocab 8192]
"""
import argparse, hashlib, os, site, sys, time
import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors, Regex

SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|pad|>"]


def source_roots():
    roots = set(site.getsitepackages()) | {os.path.dirname(os.__file__)}
    return sorted(r for r in roots if os.path.isdir(r))


def collect(max_bytes):
    seen, docs, total = set(), [], 0
    for root in source_roots():
        for dirpath, _, files in os.walk(root):
            for f in sorted(files):
                if not f.endswith(".py"):
                    continue
                try:
                    data = open(os.path.join(dirpath, f), "rb").read()
                except OSError:
                    continue
                if not 256 <= len(data) <= 400_000:
                    continue
                h = hashlib.sha1(data).digest()
                if h in seen:
                    continue
                seen.add(h)
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if "<|endoftext|>" in text:
                    continue
                docs.append((h, text))
                total += len(data)
                if total >= max_bytes:
                    return docs
    return docs


def build_tokenizer(sample, vocab):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIALS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(sample, trainer=trainer)
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--max-mb", type=float, default=320)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--heldout-per-mille", type=int, default=15)
    ap.add_argument("--tokenizer", help="reuse this tokenizer.json instead of training one (to resume training)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    docs = collect(int(a.max_mb * 1e6))
    train = [t for h, t in docs if h[0] * 1000 // 256 >= a.heldout_per_mille]
    held = [t for h, t in docs if h[0] * 1000 // 256 < a.heldout_per_mille]
    print(f"corpus: {len(docs)} files, {sum(map(len, train)) / 1e6:.1f} MB train, "
          f"{sum(map(len, held)) / 1e6:.1f} MB held-out ({time.time() - t0:.0f}s)", flush=True)

    if a.tokenizer:
        tok = Tokenizer.from_file(a.tokenizer)
        eot = tok.token_to_id("<|endoftext|>")
    else:
        rng = np.random.default_rng(0)
        sample = [train[i] for i in rng.permutation(len(train))[: max(1, len(train) // 4)]]
        tok = build_tokenizer(sample, a.vocab)
        # Like Llama-3: encoding with special tokens prepends the begin-of-text token the model was trained with.
        eot = tok.token_to_id("<|endoftext|>")
        tok.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A", pair="<|endoftext|> $A $B",
                                                           special_tokens=[("<|endoftext|>", eot)])
    tok.save(os.path.join(a.out, "tokenizer.json"))
    print(f"tokenizer: vocab {tok.get_vocab_size()} ({time.time() - t0:.0f}s)", flush=True)

    for name, part in (("train", train), ("heldout", held)):
        sep = np.array([eot], dtype=np.uint16)
        arr = np.concatenate([x for enc in tok.encode_batch(part, add_special_tokens=False)
                              for x in (np.asarray(enc.ids, dtype=np.uint16), sep)])
        arr.tofile(os.path.join(a.out, f"{name}.u16"))
        print(f"{name}: {arr.size / 1e6:.1f}M tokens, {sum(map(len, part)) / max(1, arr.size):.2f} chars/token "
              f"({time.time() - t0:.0f}s)", flush=True)
    with open(os.path.join(a.out, "heldout.txt"), "w", encoding="utf-8") as f:
        f.write("<|endoftext|>".join(held))


if __name__ == "__main__":
    sys.exit(main())
