"""Measure which languages Parley can hold a conversation in with its offline engines.

For each candidate language, three short questions are spoken by the offline voice for that
language, then:

- recognized by Whisper base in that language (character error rate against the text);
- given to Whisper's language detection (is the language the top guess among all, and among
  the candidates only; and, with English as the configured language, does the prior rule in
  ``assistant.engines.local.stt`` pick the right one);
- asked of the offline language model with the reply-language instruction of
  ``assistant.prompt`` (is the answer in that language, judged by its script or its commonest
  words).

Run: ``PYTHONPATH=. python scripts/measure_languages.py [--languages de,fr] [--no-llm]``.
Prints one JSON object per language and a table; the table in ``assistant/languages.py`` was
made from its output.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import sys
import time
import unicodedata
from collections.abc import AsyncIterator

import numpy as np

QUESTIONS: dict[str, tuple[str, str, str]] = {
    "en": ("What is the capital of France?", "How many legs does a spider have?",
           "Can you recommend a good book for the holidays?"),
    "de": ("Was ist die Hauptstadt von Frankreich?", "Wie viele Beine hat eine Spinne?",
           "Kannst du mir ein gutes Buch für den Urlaub empfehlen?"),
    "fr": ("Quelle est la capitale de la France ?", "Combien de pattes a une araignée ?",
           "Peux-tu me conseiller un bon livre pour les vacances ?"),
    "es": ("¿Cuál es la capital de Francia?", "¿Cuántas patas tiene una araña?",
           "¿Me puedes recomendar un buen libro para las vacaciones?"),
    "it": ("Qual è la capitale della Francia?", "Quante zampe ha un ragno?",
           "Mi consigli un buon libro per le vacanze?"),
    "pt": ("Qual é a capital da França?", "Quantas patas tem uma aranha?",
           "Você pode me recomendar um bom livro para as férias?"),
    "nl": ("Wat is de hoofdstad van Frankrijk?", "Hoeveel poten heeft een spin?",
           "Kun je me een goed boek voor de vakantie aanraden?"),
    "sv": ("Vad är huvudstaden i Frankrike?", "Hur många ben har en spindel?",
           "Kan du rekommendera en bra bok för semestern?"),
    "pl": ("Jaka jest stolica Francji?", "Ile nóg ma pająk?",
           "Czy możesz polecić dobrą książkę na wakacje?"),
    "cs": ("Jaké je hlavní město Francie?", "Kolik nohou má pavouk?",
           "Můžeš mi doporučit dobrou knihu na dovolenou?"),
    "tr": ("Fransa'nın başkenti neresidir?", "Bir örümceğin kaç bacağı vardır?",
           "Tatil için iyi bir kitap önerebilir misin?"),
    "ru": ("Какая столица Франции?", "Сколько ног у паука?",
           "Можешь посоветовать хорошую книгу на отпуск?"),
    "uk": ("Яка столиця Франції?", "Скільки ніг у павука?",
           "Чи можеш порадити гарну книжку на відпустку?"),
    "id": ("Apa ibu kota Prancis?", "Berapa jumlah kaki laba-laba?",
           "Bisakah kamu merekomendasikan buku yang bagus untuk liburan?"),
    "vi": ("Thủ đô của nước Pháp là gì?", "Con nhện có bao nhiêu chân?",
           "Bạn có thể giới thiệu một cuốn sách hay cho kỳ nghỉ không?"),
    "zh": ("法国的首都是哪里？", "蜘蛛有几条腿？", "你能推荐一本适合假期读的好书吗？"),
    "ja": ("フランスの首都はどこですか？", "クモの足は何本ありますか？",
           "休暇におすすめの本はありますか？"),
    "ko": ("프랑스의 수도는 어디인가요?", "거미는 다리가 몇 개인가요?",
           "휴가 때 읽을 좋은 책을 추천해 줄 수 있나요?"),
    "ar": ("ما هي عاصمة فرنسا؟", "كم عدد أرجل العنكبوت؟", "هل يمكنك أن تنصحني بكتاب جيد للعطلة؟"),
    "hi": ("फ्रांस की राजधानी क्या है?", "मकड़ी के कितने पैर होते हैं?",
           "क्या आप छुट्टियों के लिए कोई अच्छी किताब सुझा सकते हैं?"),
}  # fmt: skip

#: Words that mark a language in a short answer (for the languages written in Latin letters).
COMMON_WORDS: dict[str, str] = {
    "en": "the is a of and it has to you in are for",
    "de": "die der das ist ein eine und hat sie es für zu nicht ich",
    "fr": "le la les est une un de des et a pour vous il elle",
    "es": "el la los las es una un de y tiene para que con",
    "it": "il la le è una un di e ha per che con sono",
    "pt": "o a os as é um uma de e tem para que com",
    "nl": "de het een is van en heeft voor je ik zijn met",
    "sv": "är en ett och har för att jag det på med den",
    "pl": "jest to na i ma się nie dla z w że",
    "cs": "je to na a má se pro z v že jsou",
    "tr": "bir ve bu için var da de ile çok",
    "id": "adalah yang dan ini untuk dengan itu memiliki ada",
    "vi": "là của có và một cho không được những",
}
SCRIPTS: dict[str, str] = {
    "ru": "CYRILLIC", "uk": "CYRILLIC", "zh": "CJK", "ja": "HIRAGANA|KATAKANA|CJK",
    "ko": "HANGUL", "ar": "ARABIC", "hi": "DEVANAGARI",
}  # fmt: skip
UKRAINIAN = set("іїєґ")


def answer_language(text: str) -> str | None:
    """The language an answer is written in, judged by its script or its commonest words."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return None
    names = [unicodedata.name(c, "") for c in letters]
    latin = sum("LATIN" in n for n in names)
    if latin < len(letters) / 2:
        if any(c in UKRAINIAN for c in text.lower()):
            return "uk"
        if any("HIRAGANA" in n or "KATAKANA" in n for n in names):
            return "ja"
        for code in ("ko", "ar", "hi", "ru", "zh"):
            if sum(bool(re.search(SCRIPTS[code], n)) for n in names) > len(letters) / 2:
                return code
        return None
    words = re.findall(r"\w+", text.lower())
    scores = {code: sum(w in set(v.split()) for w in words) for code, v in COMMON_WORDS.items()}
    best = max(scores, key=lambda c: scores[c])
    return best if scores[best] > 0 else None


def char_error_rate(said: str, heard: str) -> float:
    import jiwer

    def norm(t: str) -> str:
        return " ".join(re.sub(r"[^\w\s]", " ", t.lower()).split())

    return float(jiwer.cer(norm(said), norm(heard)))


async def speak(text: str, language: str) -> np.ndarray:
    """The offline voice for ``language`` saying ``text``, as 16 kHz float audio."""
    from assistant.audio.wav import resample
    from assistant.engines.local.tts import LocalTTS

    tts = LocalTTS(language=language)

    async def one() -> AsyncIterator[str]:
        yield text

    chunks, rate = [], 16_000
    async for chunk in tts.stream(one(), voice=None, language=language):
        chunks.append(chunk.pcm)
        rate = chunk.sample_rate
    tts.close()
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return resample(pcm, rate, 16_000).astype(np.float32) / 32768.0


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--languages", default=",".join(QUESTIONS))
    parser.add_argument("--no-llm", action="store_true")
    args = parser.parse_args(argv)
    codes = [c for c in args.languages.split(",") if c]

    from assistant.engines.base import ChatRequest, Message, TextDelta
    from assistant.engines.local.stt import WhisperRunner, choose_language
    from assistant.prompt import system_prompt

    runner = WhisperRunner("base", 2)
    llm = None
    if not args.no_llm:
        from assistant.engines.local.llm import LocalLLM

        llm = LocalLLM()
        await llm.warm_up()
    rows: list[Row] = []
    for code in codes:
        row = Row(code)
        for question in QUESTIONS[code]:
            audio = await speak(question, code)
            heard = runner.transcribe(audio, code).text
            row.cer.append(round(char_error_rate(question, heard), 3))
            probs = runner.language_probabilities(audio)
            allowed = {c: p for c, p in probs.items() if c in QUESTIONS}
            row.top1 += max(probs, key=lambda c: probs[c]) == code
            row.top1_candidates += max(allowed, key=lambda c: allowed[c]) == code
            row.prior_en += choose_language(probs, "en", set(QUESTIONS)) == code
            row.heard.append(heard)
            row.probabilities.append({c: round(v, 4) for c, v in probs.items() if v >= 0.0005})
            if llm is None:
                continue
            request = ChatRequest(
                [Message("system", system_prompt("", code)), Message("user", question)],
                max_tokens=60,
            )
            t0, answer = time.perf_counter(), ""
            async for event in llm.stream(request):
                if isinstance(event, TextDelta):
                    answer += event.text
            row.answer_seconds.append(round(time.perf_counter() - t0, 1))
            row.answers += answer_language(answer) == code
            row.samples.append(answer.strip()[:80])
        print(json.dumps(dataclasses.asdict(row), ensure_ascii=False), flush=True)
        rows.append(row)
    if llm is not None:
        await llm.aclose()
    print("\nlang  CER(mean)  detect(all)  detect(candidates)  prior-en  answers")
    for row in rows:
        cer = sum(row.cer) / len(row.cer)
        print(
            f"{row.language:<5} {cer:9.2f}  {row.top1}/3{'':10}{row.top1_candidates}/3"
            f"{'':17}{row.prior_en}/3{'':7}{row.answers}/3"
        )
    return 0


@dataclasses.dataclass
class Row:
    language: str
    cer: list[float] = dataclasses.field(default_factory=list)
    top1: int = 0
    top1_candidates: int = 0
    prior_en: int = 0
    answers: int = 0
    answer_seconds: list[float] = dataclasses.field(default_factory=list)
    heard: list[str] = dataclasses.field(default_factory=list)
    probabilities: list[dict[str, float]] = dataclasses.field(default_factory=list)
    samples: list[str] = dataclasses.field(default_factory=list)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
