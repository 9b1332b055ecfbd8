"""Generate the bundled sample corpus: a small, web-crawl-shaped Parquet file.

    python -m curate.sample.generate [OUT.parquet]

Composition (seeded, so a given Python version always produces the same file;
the committed ``sample.parquet`` was made with CPython 3.11: 10,116 rows, 3,795
unique pages).  Everything educational comes from text every Python install
has, each docstring used by one page only:

* explanation pages (253, ``stdlib_docs``): standard-library docstrings of
  800 characters or more (modules, classes, functions, methods: explanatory
  prose written by its authors), and shorter module or class docstrings
  followed by those of up to six of their functions or methods, as ``help()``
  shows them;
* code pages (180, ``stdlib_code``): a standard-library function's docstring,
  then its source in a fenced code block;
* exercise pages (154, ``stdlib_exercises``): worked exercises from the
  standard library's doctest examples: up to three questions (the example's
  code), their answers (its recorded output) and the explanation (the rest of
  the docstring);
* language reference pages (40, ``language_reference``): the shorter sections
  of the Python Language Reference as ``help()`` shows them (``pydoc_data``);
* tutorial pages (210, ``web_tutorial``): tutorial-blog posts, a byline and a
  chatty introduction around two to four documented functions of one module;
* benchmark-contaminated pages (8, ``web_contaminated``): worked-solution pages
  (the usual way test items leak onto the web) quoting a question and its
  solution from the project's own tiny benchmark ``sample_benchmark.jsonl``;
* middling pages (120, ``web_forum_answer``): chatty forum answers that quote
  one paragraph of standard-library documentation (the web's continuum
  between the two);
* English web pages the project writes (1,000 unique, ``web_chatter``,
  ``web_product``, ``web_spam``, ``web_boilerplate``): forum chatter, product
  listings, spam, cookie banners, navigation boilerplate;
* non-English pages the project writes (1,820 unique, ``web_<lang>``): French,
  German, Spanish, Portuguese, Russian, Chinese and Japanese, 260 each;
* blank pages (10): empty or whitespace-only text;
* duplicates (about 60% of all rows), as in a crawl: boilerplate and spam are
  copied most, educational pages least.  Each copy is exact, a case/whitespace
  variant (an exact duplicate after normalization) or a near duplicate (a few
  words changed, a header or footer added).

So about half of the unique pages are English, and about two fifths of those
(a fifth of all unique pages, 14% of the rows) are educational.  The
``source`` column says which part a row came from; ``dup_kind`` says how a row
was derived (``original``, ``exact``, ``normalized``, ``near``) so tests and
benchmarks have ground truth.  The part sizes are the design (chosen so that the
default run keeps a few hundred documents from all five categories of the Phi-3
mixture); no stage's threshold or model is tuned to this file, and the funnel
shows what the stages make of it.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import inspect
import io
import json
import pkgutil
import random
import re
import sys
import types
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20261122
HERE = Path(__file__).parent
CODE_PAGES = 180
TUTORIAL_PAGES = 210
WEB_PAGES = 1000
FORUM_PAGES = 120
FOREIGN_PAGES_PER_LANGUAGE = 260

# Not read for docstrings: imports with side effects (antigravity opens a
# browser, this prints), GUI toolkits, the test suite, deprecated packages that
# warn on import, tools, a hundred one-line codec modules; pydoc_data is read
# apart (``reference_pages``).  Every walk below is sorted.
_SKIP_MODULES = {
    "antigravity",
    "distutils",
    "encodings",
    "ensurepip",
    "idlelib",
    "lib2to3",
    "pydoc_data",
    "test",
    "this",
    "tkinter",
    "turtle",
    "turtledemo",
    "venv",
}


def _quiet_import(name: str) -> types.ModuleType | None:
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return importlib.import_module(name)
    except BaseException:  # ImportError, and the odd SystemExit of a platform-specific module
        return None


def stdlib_modules() -> list[tuple[str, types.ModuleType]]:
    """The importable standard-library modules and their public submodules, by name."""
    found = {}
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in _SKIP_MODULES:
            continue
        module = _quiet_import(name)
        if module is None:
            continue
        found[name] = module
        for info in pkgutil.iter_modules(getattr(module, "__path__", None) or [], name + "."):
            if any(part.startswith("_") or part in ("test", "tests") for part in info.name.split(".")[1:]):
                continue
            if (sub := _quiet_import(info.name)) is not None:
                found[info.name] = sub
    return sorted(found.items())


def _doc(obj) -> str:
    """The object's own docstring (not one inherited from a base class), dedented."""
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def documented(modules) -> list[tuple[str, str, object, str]]:
    """(qualified name, kind, object, docstring) of each module, public class, method and
    function defined in ``modules`` (re-exported names are left to the module defining them)."""
    with warnings.catch_warnings():  # typing.io and typing.re warn when their docstrings are read
        warnings.simplefilter("ignore", DeprecationWarning)
        return _documented(modules)


def _documented(modules) -> list[tuple[str, str, object, str]]:
    out = []
    for name, module in modules:
        out.append((name, "module", module, _doc(module)))
        for member_name, member in sorted(vars(module).items()):
            if member_name.startswith("_") or getattr(member, "__module__", None) != name:
                continue
            if inspect.isclass(member):
                out.append((f"{name}.{member_name}", "class", member, _doc(member)))
                for attr, value in sorted(vars(member).items()):
                    value = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                    if not attr.startswith("_") and (inspect.isfunction(value) or inspect.ismethoddescriptor(value)):
                        out.append((f"{name}.{member_name}.{attr}", "method", value, _doc(value)))
            elif inspect.isfunction(member) or inspect.isbuiltin(member):
                out.append((f"{name}.{member_name}", "function", member, _doc(member)))
    return out


class _Elided:
    def __repr__(self) -> str:
        return "..."


def _signature(obj) -> str | None:
    """The call signature, with every default that is not a number, bool, None or short
    string shown as ``...``: other defaults' reprs can hold the machine's state (``cgi.test``'s
    is ``os.environ``) or an address."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = []
    for p in sig.parameters.values():
        value = p.default
        if value is not p.empty and not (
            value is None
            or isinstance(value, (bool, int, float))
            or (isinstance(value, str) and len(value) <= 12 and value.isascii() and "/" not in value)
        ):
            p = p.replace(default=_Elided())
        params.append(p)
    return str(sig.replace(parameters=params))


_PARSER = doctest.DocTestParser()


def _examples(doc: str) -> list[doctest.Example]:
    try:
        return _PARSER.get_examples(doc)
    except ValueError:
        return []


def _prose(doc: str) -> str:
    """The docstring without its ``>>>`` examples and their output."""
    lines, in_example = [], False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.startswith(">>>"):
            in_example = True
            continue
        if in_example and stripped:
            continue
        in_example = False
        lines.append(line)
    text = re.sub(r"(?im)^[ \t]*(?:examples?|for example|usage)[ \t]*:?[ \t]*$", "", "\n".join(lines))
    return re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", text).strip()


def _session(source: str) -> str:
    """An example's source as the interactive prompt shows it."""
    first, *rest = source.rstrip("\n").split("\n")
    return "\n".join([f">>> {first}"] + [f"... {line}" for line in rest])


_QUESTIONS = [
    "What does the following expression evaluate to?",
    "What does the interactive prompt show after the last line?",
    "Predict the result of the last line before you read the answer.",
    "What value does Python print for the last line?",
]


def exercise_pages(rng: random.Random, objects, used: set[str]) -> list[dict]:
    """Worked exercises from the standard library's doctest examples: up to three questions
    (an example's code, set-up lines included), their answers (the example's recorded
    output) and the explanation (the rest of the docstring)."""
    pages = []
    for qualname, _kind, _obj, doc in objects:
        if doc in used:
            continue
        questions, setup = [], []
        for example in _examples(doc):
            want = example.want.strip()
            if not want:
                if len(setup) < 4:
                    setup.append(_session(example.source))
                continue
            if (
                example.options
                or "Traceback" in want
                or len(want) > 200
                or len(example.source) > 120
                or "\n" in example.source.strip()
            ):
                continue
            questions.append((setup[:], _session(example.source), want))
        explanation = _prose(doc)
        if not questions or len(explanation) < 40:
            continue
        used.add(doc)
        parts = [
            f"# Exercise: `{qualname}`",
            "Work out each result before you read its answer; the explanation after the answers "
            f"comes from the documentation of `{qualname}`.",
        ]
        for i, (setup_lines, line, want) in enumerate(questions[:3], 1):
            code = "\n".join(setup_lines + [line])
            parts.append(f"**Question {i}.** {rng.choice(_QUESTIONS)}\n\n```python\n{code}\n```")
            parts.append(f"**Answer {i}.** `{want}`" if "\n" not in want else f"**Answer {i}.**\n\n```\n{want}\n```")
        parts.append(f"**Explanation.** {explanation}")
        pages.append({"text": "\n\n".join(parts) + "\n", "source": "stdlib_exercises", "lang_hint": "en"})
    return pages


def code_pages(rng: random.Random, modules, used: set[str], count: int) -> list[dict]:
    """Standard-library functions as markdown: the docstring, then the source in a fenced block."""
    candidates, taken = [], set(used)
    for name, module in modules:
        for fname, fn in sorted(vars(module).items()):
            if fname.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != name:
                continue
            doc = _doc(fn)
            if len(doc) < 200 or doc in taken:
                continue
            try:
                src = inspect.getsource(fn)
            except (OSError, TypeError):
                continue
            if 300 <= len(src) <= 4000:
                taken.add(doc)
                candidates.append((f"{name}.{fname}", doc, src))
    pages = []
    for qualname, doc, src in rng.sample(candidates, min(count, len(candidates))):
        used.add(doc)
        text = f"## `{qualname}`\n\n{doc}\n\nHere is how the standard library implements it:\n\n```python\n{src}```\n"
        pages.append({"text": text, "source": "stdlib_code", "lang_hint": "en"})
    return pages


_TITLES = {
    "module": "The `{}` module",
    "class": "The `{}` class",
    "function": "The `{}` function",
    "method": "The `{}` method",
}


def explanation_pages(objects, used: set[str]) -> list[dict]:
    """Explanatory prose written by the standard library's authors: each module, class,
    function and method whose docstring has 800 characters or more, and each module or
    class with a shorter one (150 or more) followed by those of up to six of its functions
    or methods, as ``help()`` shows them, when the docstrings come to 800 or more.
    Docstrings no other part took."""
    members: dict[str, list] = {}
    for qualname, kind, obj, doc in objects:
        if kind in ("function", "method"):
            members.setdefault(qualname.rpartition(".")[0], []).append((qualname, obj, doc))
    pages = []
    for qualname, kind, _obj, doc in objects:
        if doc in used:
            continue
        parts = [f"# {_TITLES[kind].format(qualname)}", doc]
        if len(doc) < 800:
            if len(doc) < 150 or kind not in ("module", "class"):
                continue
            shown = [
                (name, obj, text)
                for name, obj, text in members.get(qualname, [])
                if len(text) >= 100 and text not in used and not _examples(text)
            ][:6]
            if len(shown) < 2 or len(doc) + sum(len(text) for _, _, text in shown) < 800:
                continue
            for name, obj, text in shown:
                parts += [f"## `{name}{_signature(obj) or '(...)'}`", text]
        used.update(parts[1::2])  # the docstrings (the headers sit between them)
        pages.append({"text": "\n\n".join(parts) + "\n", "source": "stdlib_docs", "lang_hint": "en"})
    return pages


def reference_pages(low: int = 500, high: int = 3000) -> list[dict]:
    """Sections of the Python Language Reference as ``help()`` shows them (``pydoc_data``),
    the shorter ones: a statement, an operator, a built-in type (each text once: "else"
    is the "if" statement's section)."""
    from pydoc_data.topics import topics

    texts = dict.fromkeys(text.strip() for _key, text in sorted(topics.items()) if low <= len(text) <= high)
    return [{"text": text + "\n", "source": "language_reference", "lang_hint": "en"} for text in texts]


_MONTHS = ["January", "March", "April", "June", "July", "September", "October", "November"]
_TUTORIAL_TITLES = [
    "A practical guide to Python's `{m}` module",
    "Getting started with `{m}` in Python",
    "Python `{m}` explained, with the docs side by side",
    "Things I wish I had known earlier about `{m}`",
    "A quick tour of the `{m}` module",
    "How to use `{m}`: a beginner's tutorial",
]
_TUTORIAL_INTROS = [
    "If you write Python for a living, sooner or later you will need `{m}`. In this post I walk through "
    "the parts of it I use most, with the official documentation for each one so you can see exactly "
    "what it promises.",
    "The `{m}` module is one of those corners of the standard library that people skip. It shouldn't be: "
    "it solves a common problem well. Below we look at {k} of its functions, what each one does and when "
    "to reach for it.",
    "This tutorial explains the `{m}` module step by step. For every function we quote its documentation "
    "and then say in plain words when it is useful.",
    "Today's post is a short tutorial on `{m}`. We go through {k} functions one at a time; each section "
    "starts with the signature, followed by the explanation from the docs.",
    "A reader asked me last week how `{m}` works, so here is the write-up. No third-party packages, just "
    "the standard library and {k} functions you can try in the interpreter right away.",
]
_TUTORIAL_STEPS = [
    "Let's look at the next one.",
    "In other words, the standard library does the bookkeeping so you do not write the loop yourself.",
    "Note that the arguments are checked, so a wrong type fails early with a clear error.",
    "This is useful when you want one well-tested function instead of a hand-written helper.",
    "Keep this one in mind: it comes up more often than you would think.",
    "Try it in the interpreter with a small input first; the behaviour described above is easy to check.",
]
_TUTORIAL_ENDINGS = [
    "That's it for this tutorial. If you have questions, leave a comment below and I will try to answer.",
    "Thanks for reading! Next week we look at another module of the standard library.",
    "I hope this helped you understand `{m}` a bit better. Share it with a friend who is learning Python.",
    "Summary: {k} functions, one module, no third-party packages. Happy coding!",
]
_TUTORIAL_FOOTERS = [
    "Tags: python, tutorial, standard library",
    "Posted in Programming. {c} comments.",
    "Related posts: Python tips and tricks, Learning Python in 30 days",
    "",
]


def tutorial_pages(rng: random.Random, objects, used: set[str], count: int) -> list[dict]:
    """Tutorial-blog pages, as the web has them: a byline, a chatty introduction, then two to
    four functions or methods of one module, each with its signature and documented
    behaviour, and a sign-off.  Docstrings of 150-800 characters that no other part took."""
    by_module: dict[str, list] = {}
    taken = set(used)  # str.replace, bytes.replace and bytearray.replace share a docstring: one page
    for qualname, kind, obj, doc in objects:
        if kind not in ("function", "method") or not 150 <= len(doc) <= 800 or doc in taken or _examples(doc):
            continue
        signature = _signature(obj)
        if signature is not None:
            taken.add(doc)
            module = qualname.rpartition(".")[0] if kind == "function" else qualname.rsplit(".", 2)[0]
            by_module.setdefault(module, []).append((qualname[len(module) + 1 :], signature, doc))
    chunks = []
    for module, functions in sorted(by_module.items()):
        rng.shuffle(functions)
        while len(functions) >= 2:
            k = min(len(functions), rng.randint(2, 4))
            chunks.append((module, functions[:k]))
            functions = functions[k:]
    pages = []
    for module, chunk in rng.sample(chunks, min(count, len(chunks))):
        k = len(chunk)
        parts = [
            "# " + rng.choice(_TUTORIAL_TITLES).format(m=module),
            f"Posted by {rng.choice(_NAMES)} on {rng.randint(1, 28)} {rng.choice(_MONTHS)} "
            f"{rng.randint(2015, 2025)} · {rng.randint(3, 12)} min read",
            rng.choice(_TUTORIAL_INTROS).format(m=module, k=k),
        ]
        for name, signature, doc in chunk:
            used.add(doc)
            parts += [f"## `{module}.{name}{signature}`", doc, rng.choice(_TUTORIAL_STEPS)]
        parts.append(rng.choice(_TUTORIAL_ENDINGS).format(m=module, k=k))
        footer = rng.choice(_TUTORIAL_FOOTERS).format(c=rng.randint(0, 40))
        if footer:
            parts.append(footer)
        pages.append({"text": "\n\n".join(parts) + "\n", "source": "web_tutorial", "lang_hint": "en"})
    return pages


def pydecimal_methods() -> list[tuple[str, str, object, str]]:
    """``decimal``'s Context and Decimal methods as its pure-Python implementation
    (``_pydecimal``) documents them, with examples; the C implementation's docstrings have none."""
    import _pydecimal

    out = []
    for cls in (_pydecimal.Context, _pydecimal.Decimal):
        for attr, value in sorted(vars(cls).items()):
            if not attr.startswith("_") and inspect.isfunction(value):
                out.append((f"decimal.{cls.__name__}.{attr}", "method", value, _doc(value)))
    return out


_ANSWER_OPENERS = [
    "Had the same question last week, the docs actually explain it pretty well:",
    "Copy-pasting from the documentation since nobody answered yet:",
    "Not sure this helps but this is what the manual says:",
    "ok so I looked it up, here you go:",
    "From the official docs (took me forever to find):",
]
_ANSWER_CLOSERS = [
    "hope that helps lol",
    "anyway that fixed it for me, thx all",
    "upvote if this worked!!",
    "still confused tbh, anyone got a simpler explanation?",
    "good luck with your project",
]


def forum_answer_pages(rng: random.Random, count: int, used: set[str]) -> list[dict]:
    """Middling pages: chatty forum answers quoting one paragraph of documentation
    (one no other part quotes)."""
    quotes, seen = [], set(used)
    for name in (
        "shutil",
        "os.path",
        "pathlib",
        "random",
        "itertools",
        "functools",
        "collections",
        "datetime",
        "re",
        "math",
        "json",
        "csv",
        "logging",
        "subprocess",
        "os",
        "time",
        "string",
        "textwrap",
        "heapq",
        "bisect",
        "operator",
        "urllib.parse",
    ):
        module = importlib.import_module(name)
        for member_name, member in sorted(inspect.getmembers(module)):
            doc = inspect.getdoc(member) if callable(member) and not member_name.startswith("_") else None
            if doc and 150 <= len(doc) <= 900 and doc not in seen:
                seen.add(doc)
                quotes.append((f"{name}.{member_name}", doc))
    pages = []
    for quote_name, doc in rng.sample(quotes, count):
        used.add(doc)
        chatter = [_fill(s, rng) for s in rng.sample(_WEB_SENTENCES["chatter"], rng.randint(1, 3))]
        text = (
            f"{rng.choice(_NAMES)}: "
            + " ".join(chatter)
            + f"\n\nRe: how does {quote_name} work?\n"
            + rng.choice(_ANSWER_OPENERS)
            + "\n\n"
            + doc
            + "\n\n"
            + rng.choice(_ANSWER_CLOSERS)
        )
        pages.append({"text": text, "source": "web_forum_answer", "lang_hint": "en"})
    return pages


BENCHMARK_PAGES_INTRO = [
    "# Worked example: multi-step word problems\n\nIn this section we solve a word problem step by step. "
    "Note that each step uses the result of the previous one, because the quantities depend on each other.",
    "# Practice problem with solution\n\nThe following exercise shows how to translate a story into arithmetic. "
    "In other words, we identify the quantities first and then combine them.",
    "# Solving rate and ratio problems\n\nFor example, consider the problem below. Therefore, we write down "
    "what is known, what is asked, and the operations that connect them.",
]


def benchmark_pages(rng: random.Random) -> list[dict]:
    items = [json.loads(line) for line in (HERE / "sample_benchmark.jsonl").read_text().splitlines() if line.strip()]
    pages = []
    for item in items[:8]:
        intro = rng.choice(BENCHMARK_PAGES_INTRO)
        solution = item["answer"].split("####")[0].strip()
        pages.append(
            {
                "text": f"{intro}\n\n**Problem.** {item['question']}\n\n**Solution.** {solution}\n\n"
                "This means the answer can be checked by working backwards from the result.",
                "source": "web_contaminated",
                "lang_hint": "en",
            }
        )
    return pages


_PRODUCTS = [
    "wireless earbuds",
    "standing desk",
    "air fryer",
    "phone case",
    "gaming chair",
    "yoga mat",
    "coffee grinder",
    "led strip lights",
    "backpack",
    "smart watch",
    "water bottle",
    "desk lamp",
    "running shoes",
    "bluetooth speaker",
    "robot vacuum",
    "electric kettle",
]
_NAMES = ["Mike", "Jen", "Carlos", "Priya", "Tom", "Aisha", "Dave", "Lena", "Sam", "Yuki", "Omar", "Kate"]
_CITIES = ["Austin", "Leeds", "Denver", "Perth", "Dublin", "Toronto", "Phoenix", "Glasgow", "Tampa", "Ottawa"]
_WEB_SENTENCES = {
    "chatter": [
        "lol that is exactly what happened to me last week",
        "anyone know if the {p} from the mall is any good?",
        "omg {n} replies and nobody answered the actual question",
        "{name} said the store in {city} closes at {n} tonight, not sure tho",
        "same here, mine broke after {n} days",
        "thx for the tip, will try it tomorrow",
        "idk man, seems kinda overpriced for a {p}",
        "bump. still looking for an answer on this",
        "my cousin in {city} got one and he hates it haha",
        "just ordered a {p}, fingers crossed",
        "does anybody else think the new update is terrible?",
        "ok so I tried turning it off and on again and now it won't start",
        "this thread is gold, saving it for later",
        "{name} you are a legend, that fixed it",
        "can't believe it's already {n} degrees outside",
        "anyway gotta run, talk later",
        "we went to that pizza place in {city} and waited {n} minutes",
        "is it just me or is the site super slow today",
    ],
    "product": [
        "Buy the best {p} online today at the lowest price!",
        "Free shipping on orders over ${n}.",
        "Rated {n} out of 5 stars by verified buyers.",
        "Limited time offer: save {n}% on every {p}.",
        "Add to cart now while supplies last.",
        "Customers who bought this {p} also bought a {p2}.",
        "In stock and ready to ship from our {city} warehouse.",
        "Order in the next {n} minutes for next-day delivery.",
        "Compare prices and read reviews for the {p}.",
        "Best seller in {p} accessories this week.",
        "Returns accepted within {n} days of purchase.",
        "Color options: black, white, blue and rose gold.",
    ],
    "spam": [
        "CLICK HERE to claim your free {p} now!!!",
        "Congratulations {name}, you have been selected as our {n}th visitor!",
        "Subscribe to our newsletter and never miss a deal.",
        "Sign up today and get ${n} credit instantly.",
        "Hot singles in {city} are waiting for you, click here.",
        "Make ${n} a day working from home, no experience needed!",
        "This one weird trick will change your life forever.",
        "Act now, this offer expires in {n} hours!",
        "Advertisement: the {p} doctors don't want you to know about.",
        "Unsubscribe at any time. Terms and conditions apply.",
        "You won't believe what happened next, click to find out.",
        "Enter your email to download your free guide.",
    ],
    "boilerplate": [
        "Home | About us | Contact | Privacy policy | Terms of use",
        "We use cookies to improve your experience. By continuing to browse you accept our cookie policy.",
        "Copyright {n} {city} Media Group. All rights reserved.",
        "Share this page on Facebook, Twitter and Pinterest.",
        "Follow us on social media for the latest updates.",
        "Skip to main content. Search this site.",
        "Posted by {name} on {n} March in Uncategorized. Leave a comment.",
        "Related posts: top {n} {p} picks, our {p2} buying guide.",
        "Sign up for our newsletter. Advertisement. Continue reading below.",
        "Login or register to post comments.",
        "Page {n} of 12. Next page. Previous page.",
        "Accept all cookies. Manage preferences.",
    ],
}

_FOREIGN = {
    "fr": [
        "Nous sommes allés au marché de {city} samedi matin.",
        "Le train avait {n} minutes de retard à cause de la neige.",
        "{name} prépare une tarte aux pommes pour le dîner de ce soir.",
        "La bibliothèque municipale sera fermée pendant les travaux.",
        "Il faut réserver une table au moins deux jours à l'avance.",
        "Les enfants jouent dans le jardin depuis le début de l'après-midi.",
        "Cette année, la récolte de raisins a été excellente dans la région.",
        "Le musée propose une nouvelle exposition sur la peinture moderne.",
        "Je voudrais acheter un billet aller-retour pour Lyon, s'il vous plaît.",
        "La réunion du conseil municipal commence à {n} heures.",
        "Mon voisin a adopté un petit chien très joueur.",
        "Nous avons discuté longtemps de politique et de cinéma.",
        "La boulangerie du coin vend le meilleur pain de tout le quartier.",
        "Il a plu pendant toute la semaine, mais le week-end était ensoleillé.",
    ],
    "de": [
        "Am Wochenende fahren wir mit dem Fahrrad an den See.",
        "Der Zug nach {city} hatte heute {n} Minuten Verspätung.",
        "{name} kocht heute Abend eine Gemüsesuppe für die ganze Familie.",
        "Die Stadtbibliothek bleibt wegen Renovierung geschlossen.",
        "Wir müssen den Tisch mindestens zwei Tage vorher reservieren.",
        "Die Kinder spielen seit dem Mittag im Garten.",
        "In diesem Jahr war die Weinernte in der Region besonders gut.",
        "Das Museum zeigt eine neue Ausstellung über moderne Malerei.",
        "Ich hätte gern eine Fahrkarte nach München, bitte.",
        "Die Sitzung des Gemeinderats beginnt um {n} Uhr.",
        "Mein Nachbar hat einen kleinen, sehr verspielten Hund.",
        "Wir haben lange über Politik und Filme gesprochen.",
        "Die Bäckerei an der Ecke verkauft das beste Brot im Viertel.",
        "Es hat die ganze Woche geregnet, aber das Wochenende war sonnig.",
    ],
    "es": [
        "El sábado por la mañana fuimos al mercado de {city}.",
        "El tren llegó con {n} minutos de retraso por la nieve.",
        "{name} está preparando una tortilla de patatas para la cena.",
        "La biblioteca municipal estará cerrada durante las obras.",
        "Hay que reservar una mesa con al menos dos días de antelación.",
        "Los niños juegan en el jardín desde el mediodía.",
        "Este año la cosecha de uva ha sido excelente en la región.",
        "El museo presenta una nueva exposición sobre pintura moderna.",
        "Quisiera comprar un billete de ida y vuelta a Sevilla, por favor.",
        "La reunión del ayuntamiento empieza a las {n} de la tarde.",
        "Mi vecino ha adoptado un perro pequeño y muy juguetón.",
        "Hablamos mucho tiempo de política y de cine.",
        "La panadería de la esquina vende el mejor pan del barrio.",
        "Llovió toda la semana, pero el fin de semana hizo sol.",
    ],
    "pt": [
        "No sábado de manhã fomos à feira de {city}.",
        "O comboio chegou com {n} minutos de atraso por causa da chuva.",
        "{name} está a preparar um bolo de laranja para o jantar.",
        "A biblioteca municipal vai estar fechada durante as obras.",
        "É preciso reservar uma mesa com pelo menos dois dias de antecedência.",
        "As crianças brincam no quintal desde o meio-dia.",
        "Este ano a colheita de uvas foi excelente na região.",
        "O museu apresenta uma nova exposição sobre pintura moderna.",
        "Queria comprar um bilhete de ida e volta para o Porto, por favor.",
        "A reunião da câmara municipal começa às {n} horas.",
        "O meu vizinho adotou um cão pequeno e muito brincalhão.",
        "Conversámos muito tempo sobre política e cinema.",
        "A padaria da esquina vende o melhor pão do bairro.",
        "Choveu a semana toda, mas o fim de semana esteve ensolarado.",
    ],
    "ru": [
        "В субботу утром мы ходили на рынок в центре города.",
        "Поезд опоздал на {n} минут из-за сильного снегопада.",
        "{name} готовит на ужин суп с грибами и картошкой.",
        "Городская библиотека будет закрыта на время ремонта.",
        "Столик нужно бронировать как минимум за два дня.",
        "Дети играют во дворе с самого обеда.",
        "В этом году урожай винограда в регионе был отличным.",
        "В музее открылась новая выставка современной живописи.",
        "Я хотел бы купить билет туда и обратно до Казани.",
        "Заседание городского совета начнётся в {n} часов.",
        "Мой сосед взял к себе маленькую и очень игривую собаку.",
        "Мы долго разговаривали о политике и о кино.",
        "В пекарне на углу продают самый вкусный хлеб в районе.",
        "Всю неделю шёл дождь, но выходные были солнечными.",
    ],
    "zh": [
        "星期六早上我们去了市中心的菜市场。",
        "因为下大雪，火车晚点了{n}分钟。",
        "{name}今天晚上给全家做了一锅蔬菜汤。",
        "市图书馆在装修期间将暂停开放。",
        "这家餐厅至少要提前两天订位。",
        "孩子们从中午开始就一直在院子里玩。",
        "今年这个地区的葡萄收成特别好。",
        "博物馆正在举办一个关于现代绘画的新展览。",
        "我想买一张去杭州的往返火车票。",
        "市议会的会议将在{n}点开始。",
        "我的邻居收养了一只很活泼的小狗。",
        "我们聊了很长时间的政治和电影。",
        "街角的面包店卖的是这一带最好吃的面包。",
        "这个星期一直在下雨，不过周末天气很好。",
    ],
    "ja": [
        "土曜日の朝、私たちは町の市場に行きました。",
        "大雪のため、電車が{n}分遅れました。",
        "{name}さんは今夜、家族のために野菜スープを作ります。",
        "市立図書館は改装工事のためしばらく休館します。",
        "このレストランは少なくとも二日前に予約が必要です。",
        "子どもたちはお昼からずっと庭で遊んでいます。",
        "今年はこの地方のぶどうの収穫がとても良かったです。",
        "美術館では現代絵画の新しい展覧会が開かれています。",
        "京都までの往復切符を一枚ください。",
        "市議会の会議は{n}時に始まります。",
        "隣の人がとても元気な小さい犬を飼い始めました。",
        "私たちは政治や映画について長い時間話しました。",
        "角のパン屋さんはこのあたりで一番おいしいパンを売っています。",
        "一週間ずっと雨でしたが、週末は晴れました。",
    ],
}


def _fill(sentence: str, rng: random.Random) -> str:
    return sentence.format(
        p=rng.choice(_PRODUCTS),
        p2=rng.choice(_PRODUCTS),
        name=rng.choice(_NAMES),
        city=rng.choice(_CITIES),
        n=rng.randint(2, 99),
    )


def web_pages(rng: random.Random, count: int) -> list[dict]:
    kinds = sorted(_WEB_SENTENCES)
    pages = []
    for _ in range(count):
        kind = rng.choice(kinds)
        pool = _WEB_SENTENCES[kind]
        k = rng.randint(4, min(9, len(pool)))
        sentences = [_fill(s, rng) for s in rng.sample(pool, k)]
        if kind == "chatter":
            text = "\n".join(f"{rng.choice(_NAMES)}: {s}" for s in sentences)
        else:
            text = "\n".join(sentences)
        pages.append({"text": text, "source": f"web_{kind}", "lang_hint": "en"})
    return pages


def foreign_pages(rng: random.Random, per_language: int) -> list[dict]:
    pages = []
    for lang in sorted(_FOREIGN):
        pool = _FOREIGN[lang]
        joiner = "" if lang in ("zh", "ja") else " "
        for _ in range(per_language):
            k = rng.randint(4, 8)
            text = joiner.join(_fill(s, rng) for s in rng.sample(pool, k))
            pages.append({"text": text, "source": f"web_{lang}", "lang_hint": lang})
    return pages


# How many extra copies a page of each source gets in the crawl: boilerplate and
# spam are copied across many sites, educational pages rarely.
_COPIES = {
    "web_boilerplate": (2, 6),
    "web_spam": (2, 6),
    "web_product": (1, 3),
    "web_chatter": (0, 2),
    "web_forum_answer": (0, 2),
    "web_tutorial": (0, 2),
    "stdlib_docs": (0, 1),
    "stdlib_code": (0, 1),
    "stdlib_exercises": (0, 1),
    "language_reference": (0, 1),
    "web_contaminated": (0, 1),
}
_FOREIGN_COPIES = (0, 3)


def _vary_case_space(text: str, rng: random.Random) -> str:
    choice = rng.randrange(3)
    if choice == 0:
        return text.upper()
    if choice == 1:
        return "  " + text.replace(" ", "  ").replace("\n", " \n\n") + "\n\t"
    return text.lower()


def _near_copy(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    if len(words) < 20:  # Chinese and Japanese: edit characters, not words
        chars = list(text)
        for _ in range(max(1, len(chars) // 30)):
            chars[rng.randrange(len(chars))] = rng.choice(chars)
        return "".join(chars)
    edits = max(1, len(words) // 30)
    for _ in range(edits):
        i = rng.randrange(len(words))
        words[i] = rng.choice(["really", "very", "quite", "also", "just", "the", "new"])
    out = " ".join(words)
    if rng.random() < 0.5:
        out = out + "\n" + rng.choice(["Share this page.", "Posted in General.", "Read more."])
    return out


def generate() -> pa.Table:
    rng = random.Random(SEED)
    modules = stdlib_modules()
    objects = documented(modules)
    used: set[str] = set()  # each docstring goes into one part only
    exercises = exercise_pages(rng, objects + pydecimal_methods(), used)
    code = code_pages(rng, modules, used, CODE_PAGES)
    explanations = explanation_pages(objects, used)
    forum_answers = forum_answer_pages(rng, FORUM_PAGES, used)
    tutorials = tutorial_pages(rng, objects, used, TUTORIAL_PAGES)
    originals = (
        explanations
        + code
        + exercises
        + reference_pages()
        + benchmark_pages(rng)
        + tutorials
        + web_pages(rng, WEB_PAGES)
        + forum_answers
        + foreign_pages(rng, FOREIGN_PAGES_PER_LANGUAGE)
    )
    rows = []
    for i, page in enumerate(originals):
        rows.append({**page, "dup_kind": "original", "origin": i})
        low, high = _COPIES.get(page["source"], _FOREIGN_COPIES)
        for _ in range(rng.randint(low, high)):
            kind = rng.choice(["exact", "exact", "normalized", "near"])
            text = page["text"]
            if kind == "normalized":
                text = _vary_case_space(text, rng)
            elif kind == "near":
                text = _near_copy(text, rng)
            rows.append({**page, "text": text, "dup_kind": kind, "origin": i})
    for j in range(10):
        rows.append(
            {
                "text": ["", " ", "\n\n", "\t "][j % 4],
                "source": "blank",
                "lang_hint": None,
                "dup_kind": "original",
                "origin": len(originals) + j,
            }
        )
    rng.shuffle(rows)
    for n, row in enumerate(rows):
        row["id"] = f"sample-{n:05d}"
        row["url"] = f"https://example.{row['source'].replace('_', '-')}.test/page/{row['origin']}"
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("text", pa.string()),
            ("source", pa.string()),
            ("url", pa.string()),
            ("lang_hint", pa.string()),
            ("dup_kind", pa.string()),
            ("origin", pa.int64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m curate.sample.generate", description="Regenerate the bundled sample corpus (deterministic)."
    )
    parser.add_argument("out", nargs="?", type=Path, default=HERE / "sample.parquet", help="Parquet file to write")
    out = parser.parse_args(sys.argv[1:] if argv is None else argv).out
    table = generate()
    pq.write_table(table, out, compression="zstd")
    print(f"wrote {table.num_rows} rows to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
