"""Generate the bundled sample corpus: a small, web-crawl-shaped Parquet file.

    python -m curate.sample.generate [OUT.parquet]

Composition (seeded, so a given Python version always produces the same file;
the committed ``sample.parquet`` was made with CPython 3.11):

* educational English (about 60 unique): module docstrings of the Python
  standard library (explanatory prose written by its authors), and
  standard-library functions shown as markdown with a fenced code block;
* benchmark-contaminated pages (8): worked-solution pages (the usual way test
  items leak onto the web) quoting a question and its solution from the
  project's own tiny benchmark ``sample_benchmark.jsonl``;
* English web pages the project writes (about 470 unique): forum chatter,
  product listings, spam, cookie banners, navigation boilerplate;
* middling pages (60): chatty forum answers that quote one paragraph of
  standard-library documentation (the web's continuum between the two);
* non-English pages the project writes (about 600 unique): French, German,
  Spanish, Portuguese, Russian, Chinese and Japanese, about 85 each;
* blank pages (10): empty or whitespace-only text;
* duplicates (about 60% of all rows), as in a crawl: boilerplate and spam are
  copied most, educational pages least.  Each copy is exact, a case/whitespace
  variant (an exact duplicate after normalization) or a near duplicate (a few
  words changed, a header or footer added).

The ``source`` column says which part a row came from; ``dup_kind`` says how
a row was derived (``original``, ``exact``, ``normalized``, ``near``) so tests
and benchmarks have ground truth.  Nothing here is tuned to hit a funnel: the
shares above are the design, and the funnel shows what the stages make of it.
"""

from __future__ import annotations

import importlib
import inspect
import json
import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20261122
HERE = Path(__file__).parent

# Modules whose docstrings read as explanations (skipping ones that are lists of
# names or license text).  Sorted for determinism.
_SKIP_MODULES = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "pydoc_data"}


def educational_pages(rng: random.Random) -> list[dict]:
    pages = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in _SKIP_MODULES:
            continue
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        doc = inspect.getdoc(module) or ""
        if len(doc) >= 800:
            pages.append({"text": f"# The `{name}` module\n\n{doc}\n", "source": "stdlib_docs", "lang_hint": "en"})
    code = []
    for name in (
        "textwrap",
        "statistics",
        "fractions",
        "heapq",
        "bisect",
        "shlex",
        "colorsys",
        "difflib",
        "calendar",
        "string",
        "fnmatch",
        "graphlib",
        "json.decoder",
        "base64",
        "html",
    ):
        module = importlib.import_module(name)
        for fname, fn in sorted(inspect.getmembers(module, inspect.isfunction)):
            if fname.startswith("_") or fn.__module__ != module.__name__:
                continue
            doc = inspect.getdoc(fn) or ""
            try:
                src = inspect.getsource(fn)
            except (OSError, TypeError):
                continue
            if len(doc) >= 200 and 300 <= len(src) <= 4000:
                code.append(
                    {
                        "text": f"## `{name}.{fname}`\n\n{doc}\n\nHere is how the standard library implements it:\n\n"
                        f"```python\n{src}```\n",
                        "source": "stdlib_code",
                        "lang_hint": "en",
                    }
                )
    rng.shuffle(code)
    return pages + code[:15]


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


def forum_answer_pages(rng: random.Random, count: int) -> list[dict]:
    """Middling pages: chatty forum answers quoting one paragraph of documentation."""
    quotes = []
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
    ):
        module = importlib.import_module(name)
        for member_name, member in sorted(inspect.getmembers(module)):
            doc = inspect.getdoc(member) if callable(member) and not member_name.startswith("_") else None
            if doc and 150 <= len(doc) <= 900:
                quotes.append((f"{name}.{member_name}", doc))
    pages = []
    for quote_name, doc in rng.sample(quotes, count):
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
    "stdlib_docs": (0, 1),
    "stdlib_code": (0, 1),
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
    originals = (
        educational_pages(rng)
        + benchmark_pages(rng)
        + web_pages(rng, 470)
        + forum_answer_pages(rng, 60)
        + foreign_pages(rng, 86)
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
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else HERE / "sample.parquet"
    table = generate()
    pq.write_table(table, out, compression="zstd")
    print(f"wrote {table.num_rows} rows to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
