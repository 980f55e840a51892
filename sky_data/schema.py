"""The one record every source is read into: a `Problem`, with a stable id derived from its content.

    from sky_data.schema import Problem
    p = Problem.make(domain="math", question="What is 1+1?", answer="2", source="local:toy.jsonl")
    p.id  # "9c1f...": the same content gives the same id on every machine and every run

The id hashes what the problem asks and how it is checked (domain, question, answer, tests, starter code), not
where it came from: the same problem from two sources has one id, so the request cache, resume and exact
deduplication all key on it. A source's own id is kept in `source_id` for reports and errors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DOMAINS", "Problem", "problem_id"]

DOMAINS = ("math", "code", "science")


def problem_id(domain: str, question: str, answer: str | None, tests: dict | None, starter_code: str = "") -> str:
    """16 hex digits of sha256 over the problem's content (canonical JSON, so key order never matters)."""
    content = json.dumps({"domain": domain, "question": question, "answer": answer, "tests": tests,
                          "starter_code": starter_code}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


@dataclass
class Problem:
    id: str  # problem_id(...) of the fields below
    domain: str  # "math" | "code" | "science"
    question: str  # the problem statement, as the source writes it
    source: str  # "numina/amc_aime", "apps", "taco", "math", "aime", "still2", "local:<file name>"
    answer: str | None = None  # math/science: the gold final answer (LaTeX as the source writes it)
    tests: dict | None = None  # code: APPS/TACO input_output {"inputs": [...], "outputs": [...], "fn_name"?: str}
    starter_code: str = ""  # code: the signature to complete (call-based problems)
    difficulty: float | str | None = None  # as the source rates it ("interview", 5, ...); the filter adds its own
    source_id: str | None = None  # the source's own id of the record, if it has one
    meta: dict[str, Any] = field(default_factory=dict)  # anything else worth keeping (url, level, tags, ...)

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"problem {self.source_id or self.id}: domain must be one of {DOMAINS}, "
                             f"got {self.domain!r}")
        if self.domain == "code" and not self.tests:
            raise ValueError(f"problem {self.source_id or self.id}: a code problem needs tests")
        if self.domain != "code" and self.answer is None:
            raise ValueError(f"problem {self.source_id or self.id}: a {self.domain} problem needs an answer")

    @classmethod
    def make(cls, *, domain: str, question: str, source: str, answer: str | None = None, tests: dict | None = None,
             starter_code: str = "", difficulty: float | str | None = None, source_id: str | None = None,
             meta: dict[str, Any] | None = None) -> Problem:
        """A Problem with its content id computed."""
        return cls(id=problem_id(domain, question, answer, tests, starter_code), domain=domain, question=question,
                   source=source, answer=answer, tests=tests, starter_code=starter_code, difficulty=difficulty,
                   source_id=source_id, meta=dict(meta or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        """Read back what `to_dict` wrote; the id must still match the content (a hand-edited file is caught)."""
        p = cls(**d)
        expected = problem_id(p.domain, p.question, p.answer, p.tests, p.starter_code)
        if p.id != expected:
            raise ValueError(f"problem {p.id}: its content hashes to {expected}; the record was edited")
        return p
