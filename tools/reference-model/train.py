"""Train the bundled reference model: a small long-context Llama (GQA, RoPE, 8K context) on code plus
synthetic retrieval tasks, then export it in the Hugging Face layout with reference log-probabilities.

usage: python train.py DATADIR OUTDIR [--seconds 360] [--batch 16] [--seq 8192] [--rope-theta T] [--eval-lengths ...]
DATADIR is what prepare_data.py wrote. OUTDIR receives config.json, model.safetensors (bf16), tokenizer.json,
tokenizer_config.json, generation_config.json, reference.json, training.json.
"""
import argparse, json, math, os, queue, random, shutil, sys, threading, time
import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM, GenerationConfig

sys.path.insert(0, os.path.dirname(__file__))
import tasks as T  # noqa: E402


class Data:
    def __init__(self, datadir, seq):
        self.tok = Tokenizer.from_file(os.path.join(datadir, "tokenizer.json"))
        self.train = np.fromfile(os.path.join(datadir, "train.u16"), dtype=np.uint16)
        self.held = np.fromfile(os.path.join(datadir, "heldout.u16"), dtype=np.uint16)
        self.seq = seq
        self.eot = self.tok.token_to_id("<|endoftext|>")
        vocab = self.tok.get_vocab_size()
        # Tokens that end a line: needles are inserted only there, so they start a line of their own.
        self.line_end = np.zeros(vocab, dtype=bool)
        for i in range(vocab):
            self.line_end[i] = self.tok.decode([i], skip_special_tokens=False).endswith("\n")

    def ids(self, text):
        return self.tok.encode(text, add_special_tokens=False).ids

    def task_sequence(self, rng, src, name, length, depth=None):
        """bos + haystack with needles + question + answer, `length` tokens before the answer (about)."""
        needles, question, answer = T.TASKS[name](rng)
        nids = [self.ids(n) for n in needles]
        qids, aids = self.ids(question), self.ids(answer)
        hay_len = length - 1 - sum(map(len, nids)) - len(qids)
        start = rng.randrange(0, len(src) - hay_len - 1)
        hay = src[start:start + hay_len]
        ends = np.flatnonzero(self.line_end[hay]) + 1  # cut positions right after a line end
        if len(ends) < len(nids) + 1:
            return None
        hay = hay[:ends[-1]]
        ends = ends[:-1]
        if depth is None:
            cuts = sorted(rng.choice(ends) for _ in nids)
        else:  # evaluation: needles spread from the given depth on, within 10% of the context
            lo = int(depth * len(hay))
            cand = ends[(ends >= lo) & (ends <= lo + max(64, len(hay) // 10))]
            if len(cand) == 0:
                cand = ends[np.argmin(np.abs(ends - lo)):][:1]
            cuts = sorted(rng.choice(list(cand)) for _ in nids)
        parts, prev = [np.array([self.eot], dtype=np.int64)], 0
        for c, n in zip(cuts, nids):
            parts += [hay[prev:c].astype(np.int64), np.array(n, dtype=np.int64)]
            prev = c
        parts += [hay[prev:].astype(np.int64), np.array(qids, dtype=np.int64)]
        prompt = np.concatenate(parts)
        return prompt, np.array(aids, dtype=np.int64)

    def batch(self, rng, batch, p_task=0.4, weights=T.TASK_WEIGHTS_STAGE1):
        out = np.empty((batch, self.seq + 1), dtype=np.int64)
        for b in range(batch):
            row = None
            if rng.random() < p_task:
                name = rng.choices(list(weights), weights=list(weights.values()))[0]
                r = self.task_sequence(rng, self.train, name, rng.randint(256, self.seq - 64))
                if r is not None:
                    p, a = r
                    nl = np.array(self.ids("\n"), dtype=np.int64)
                    s = rng.randrange(0, len(self.train) - self.seq)
                    row = np.concatenate([p, a, nl, self.train[s:s + self.seq].astype(np.int64)])[:self.seq + 1]
            if row is None:
                s = rng.randrange(0, len(self.train) - self.seq)
                row = np.concatenate([[self.eot], self.train[s:s + self.seq].astype(np.int64)])
            out[b] = row
        return torch.from_numpy(out)


def make_model(vocab, eot, pad, seq, theta=500000.0):
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=384, intermediate_size=1024, num_hidden_layers=8,
                      num_attention_heads=6, num_key_value_heads=2, head_dim=64, max_position_embeddings=seq,
                      rope_theta=theta, rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=eot,
                      eos_token_id=eot, pad_token_id=pad, attention_bias=False, mlp_bias=False,
                      hidden_act="silu", initializer_range=0.02)
    cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(cfg)


def rope_theta(cfg):
    """The RoPE base, read from either config layout (transformers 5 keeps it in rope_parameters)."""
    params = getattr(cfg, "rope_parameters", None)
    return params["rope_theta"] if params and "rope_theta" in params else cfg.rope_theta


def set_rope_theta(cfg, theta):
    params = getattr(cfg, "rope_parameters", None)
    if params is not None:
        params["rope_theta"] = theta
    else:
        cfg.rope_theta = theta


@torch.no_grad()
def teacher_forced_match(model, data, name, length, n, seed, depths=None):
    """Exact match of the answer under greedy decoding, which equals argmax at every answer position."""
    rng, hits, rows = random.Random(seed), 0, 0
    for i in range(n):
        d = None if depths is None else depths[i % len(depths)]
        r = None
        while r is None:
            r = data.task_sequence(rng, data.held, name, length, d)
        p, a = r
        x = torch.from_numpy(np.concatenate([p, a])).cuda()[None]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x).logits[0, len(p) - 1:-1]
        hits += int(torch.equal(logits.argmax(-1).cpu(), torch.from_numpy(a)))
        rows += 1
    return hits / rows


@torch.no_grad()
def perplexity(model, data, ctx, windows=8):
    nll, cnt = 0.0, 0
    for w in range(windows):
        s = (w * 7919 * ctx) % (len(data.held) - ctx - 1)
        x = torch.from_numpy(np.concatenate([[data.eot], data.held[s:s + ctx].astype(np.int64)])).cuda()[None]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x[:, :-1]).logits.float()
        nll += F.cross_entropy(logits[0], x[0, 1:], reduction="sum").item()
        cnt += ctx
    return math.exp(nll / cnt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--seconds", type=float, default=360)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=8192)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--init", help="continue from this exported checkpoint (its bf16 weights become the f32 start)")
    ap.add_argument("--p-task", type=float, default=0.4, help="share of sequences that carry a retrieval task")
    ap.add_argument("--mix", choices=sorted(T.TASK_MIXES), help="task mix (default: stage1 from scratch, stage2 with --init)")
    ap.add_argument("--rope-theta", type=float, help="RoPE base (default 500000 from scratch; with --init, the checkpoint's "
                    "unless given: raising it is how a context extension starts)")
    ap.add_argument("--eval-lengths", default="2048,4096,8192", help="contexts of the PyTorch passkey and perplexity "
                    "evaluation; multikey is measured at the longest")
    a = ap.parse_args()
    eval_lengths = [int(x) for x in a.eval_lengths.split(",")]
    torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    data = Data(a.data, a.seq)
    vocab = data.tok.get_vocab_size()
    pad = data.tok.token_to_id("<|pad|>")
    if a.init:
        cfg = LlamaConfig.from_pretrained(a.init)
        cfg.max_position_embeddings = max(cfg.max_position_embeddings, a.seq)
        if a.rope_theta:
            set_rope_theta(cfg, a.rope_theta)
        model = LlamaForCausalLM.from_pretrained(a.init, config=cfg, dtype=torch.float32, attn_implementation="sdpa").cuda()
        prior = json.load(open(os.path.join(a.init, "training.json")))
    else:
        model = make_model(vocab, data.eot, pad, a.seq, a.rope_theta or 500000.0).cuda()
        prior = None
    print(f"rope theta {rope_theta(model.config):g}, context {model.config.max_position_embeddings}", flush=True)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"model: {nparams / 1e6:.2f}M parameters; train {len(data.train) / 1e6:.1f}M tokens", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    nodecay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), fused=True)

    weights = T.TASK_MIXES[a.mix or ("stage2" if a.init else "stage1")]
    q = queue.Queue(maxsize=6)
    def producer(rng):
        while True:
            q.put(data.batch(rng, a.batch, a.p_task, weights).pin_memory())
    for i in range(3):
        threading.Thread(target=producer, args=(random.Random(a.seed + i),), daemon=True).start()

    warmup, t0, step, total_steps, log = 60, time.time(), 0, None, []
    while True:
        elapsed = time.time() - t0
        if step == 30:
            t30 = elapsed
        if step == 100:  # calibrate the schedule length to the time budget from the speed after warm-up
            total_steps = 100 + int((a.seconds - elapsed) / ((elapsed - t30) / 70))
            print(f"schedule: {total_steps} steps", flush=True)
        if total_steps is not None and step >= total_steps:
            break
        horizon = total_steps or 10 ** 9
        lr = a.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / horizon))))
        for g in opt.param_groups:
            g["lr"] = lr
        x = q.get().cuda(non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x[:, :-1]).logits
        loss = F.cross_entropy(logits.float().view(-1, vocab), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0 or step == 1:
            l = loss.item()
            tps = step * a.batch * a.seq / (time.time() - t0)
            log.append({"step": step, "loss": l, "lr": lr, "seconds": time.time() - t0})
            print(f"step {step} loss {l:.3f} lr {lr:.2e} {tps / 1e6:.2f}M tok/s {time.time() - t0:.0f}s", flush=True)
    train_seconds = time.time() - t0
    model.eval()

    results = {"passkey": {}, "multikey": {}, "perplexity": {}}
    depths = [i / 10 + 0.05 for i in range(10)]
    for L in eval_lengths:
        results["passkey"][L] = teacher_forced_match(model, data, "passkey", L, 20, 7 + L, depths)
        results["perplexity"][L] = perplexity(model, data, L, windows=max(2, 16384 // L))
    results["multikey"][eval_lengths[-1]] = teacher_forced_match(model, data, "multikey", eval_lengths[-1], 40, 99, depths)
    for name in ("multivalue", "multiquery", "vartrack", "cwe"):
        results[name] = {4096: teacher_forced_match(model, data, name, 4096, 20, 5, depths)}
    print("pytorch eval:", json.dumps(results), flush=True)

    os.makedirs(a.out, exist_ok=True)
    model.generation_config = GenerationConfig(bos_token_id=data.eot, eos_token_id=data.eot, pad_token_id=pad)
    model.to(torch.bfloat16).save_pretrained(a.out)  # safetensors is the only format in transformers 5
    shutil.copy(os.path.join(a.data, "tokenizer.json"), a.out)
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
                   "eos_token": "<|endoftext|>", "pad_token": "<|pad|>", "model_max_length": a.seq}, f, indent=2)

    # Reference log-probabilities: the exported bf16 weights evaluated in float64 by transformers (eager).
    ref = LlamaForCausalLM.from_pretrained(a.out, dtype=torch.float64, attn_implementation="eager").cuda().eval()
    s = 1000
    snippet = np.concatenate([[data.eot], data.held[s:s + 400].astype(np.int64)])
    with torch.no_grad():
        lp = torch.log_softmax(ref(torch.from_numpy(snippet).cuda()[None]).logits[0].double(), -1)
    token_lp = lp[:-1].gather(1, torch.from_numpy(snippet[1:]).cuda()[:, None])[:, 0].tolist()
    p, ans = data.task_sequence(random.Random(3), data.held, "passkey", 1024, 0.3)
    reference = {"token_ids": snippet.tolist(), "token_logprobs": token_lp,
                 "retrieval": {"prompt_ids": p.tolist(), "answer_ids": ans.tolist(),
                               "answer": data.tok.decode(ans.tolist())}}
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump(reference, f)
    with open(os.path.join(a.out, "training.json"), "w") as f:
        prior_tokens = prior["tokens_seen_total"] if prior and "tokens_seen_total" in prior else (prior or {}).get("tokens_seen", 0)
        json.dump({"parameters": nparams, "steps": step, "resumed_from": prior, "p_task": a.p_task, "task_weights": weights,
                   "tokens_seen_total": prior_tokens + step * a.batch * a.seq, "batch": a.batch, "seq": a.seq,
                   "tokens_seen": step * a.batch * a.seq, "train_seconds": train_seconds, "lr": a.lr,
                   "final_train_loss": log[-1]["loss"] if log else None, "log": log,
                   "pytorch_eval": results, "gpu": torch.cuda.get_device_name()}, f, indent=1)
    print("exported", os.listdir(a.out), flush=True)


if __name__ == "__main__":
    main()
