"""Boilerplate rules: every seed furniture line goes, every article line stays, each removal is counted."""
from __future__ import annotations

import collections
import dataclasses
import re
import tomllib
from importlib import resources

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from wirewash.pipeline.records import split_title
from hypothesis import given, settings, strategies as st

from wirewash.transforms import boilerplate
from wirewash.transforms.boilerplate import (Rule, RuleSet, StripBoilerplate, edge_pass_applies, first_chars, fold_line,
                                   load_rules, match_line, plain_match_line, required_substrings,
                                   strip_boilerplate)
from wirewash.transforms.linear_regex import compile_linear
from wirewash.transforms.normalize import normalize_text
from wirewash.transforms.text import raw_fold
from wirewash.transforms.types import FORMAT_HTML, FORMAT_TEXT, Article

RULES = load_rules()

SEED_FURNITURE = {
    "001_eeeab6a3769ab77a.txt": ["Sign up now: Get ST's newsletters delivered to your inbox", "PHOTO: ST FILE",
                                 "Follow topic:", "See more on"],
    "000_9635c48be9c98235.txt": ["Read more: Joe Biden Addresses Russia Mutiny Concerns",
                                 "Read more: Micron Chip Testing Plant"],
    "004_300f68dad3cf35d2.txt": ["Thời gian", "Lượt xem", "58 lượt xem", "Oct 30, 2023", "Tổng số đánh giá: 0",
                                 "Xếp hạng: 5 / 5 sao", "Same category"],
}


@pytest.mark.parametrize("line, rule", [
    ("Sign up now: Get ST's newsletters delivered to your inbox", "newsletter"),
    ("Read more: Joe Biden Addresses Russia Mutiny Concerns with NATO Allies", "read_more"),
    ("See more on", "read_more"),
    ("PHOTO: ST FILE", "photo_credit"),
    ("Follow topic:", "follow"),
    ("  • Thời gian", "ui_meta"),
    ("  • Lượt xem", "views"),
    ("58 lượt xem", "views"),
    ("Tổng số đánh giá: 0", "rating"),
    ("Xếp hạng: 5 / 5 sao", "rating"),
    ("Same category", "related"),
    ("Oct 30, 2023", "dateline"),
    ("Thứ hai, 30/10/2023 - 10:15", "dateline"),
    ("Đọc thêm: Giá vàng hôm nay tăng mạnh", "read_more"),
    ("Lesen Sie auch: Die Wahl in Berlin", "read_more"),
    ("Foto: dpa", "photo_credit"),
    ("Advertisement", "ads"),
    ("We use cookies to improve your experience. Accept all", "cookie"),
    ("© 2023 Example Media. All rights reserved.", "copyright"),
])
def test_rule_matches(line, rule):
    assert RULES.match(fold_line(line)) == rule


@pytest.mark.parametrize("line", [
    "China has called for the sanctions to be lifted to facilitate dialogue.",
    "Mr Li told General Giang that relations between their militaries had developed well.",
    "Read more about the plan, the mayor said, once the council publishes the full report on its website "
    "next week, which will include the detailed costs of each of the twelve new bus lines and three bridges.",
    "Photographers gathered outside the court on Monday.",
    "The share of voters who backed the plan rose to 58 percent.",
    "October 30, 2023 was the day the talks began in Beijing, officials said.",
])
def test_article_lines_are_kept(line):
    assert RULES.match(fold_line(line)) is None


@pytest.mark.parametrize("name, furniture", sorted(SEED_FURNITURE.items()))
def test_seed_furniture_removed_and_content_kept(seeds_dir, name, furniture):
    raw = (seeds_dir / name).read_text(encoding="utf-8")
    _, body = split_title(raw)
    cleaned, removed = strip_boilerplate(normalize_text(body), RULES)
    folded = [fold_line(line) for line in cleaned.splitlines()]
    for item in furniture:
        assert not any(line.startswith(fold_line(item)) for line in folded), item
    assert len(removed) >= len(furniture)
    for line in normalize_text(body).splitlines():
        if len(line.split()) >= 8 and not any(fold_line(line).startswith(fold_line(f)) for f in furniture):
            assert line in cleaned.splitlines(), line


def test_counter_callback_counts_each_removal():
    counts = collections.Counter()
    text = "Read more: A\nBody line one is here.\nRead more: B\nPHOTO: AFP"
    cleaned, removed = strip_boilerplate(text, RULES, lambda name: counts.update([name]))
    assert cleaned == "Body line one is here."
    assert removed == ["read_more", "read_more", "photo_credit"]
    assert counts == {"removed_read_more": 2, "removed_photo_credit": 1}


def test_never_adds_characters_and_keeps_lines_verbatim():
    text = "  Indented line stays as is.  \n\n\nSign up now: Get our newsletters delivered to your inbox\n\nEnd."
    cleaned, _ = strip_boilerplate(text, RULES)
    assert cleaned == "  Indented line stays as is.  \n\nEnd."


def test_user_rules_extend_the_package_rules(tmp_path):
    extra = tmp_path / "mine.toml"
    extra.write_text(r"""
[rules.house_ads]
en = ['^buy our mugs\b']
[rules.newsletter]
en = ['^mail me$']
""")
    rules = load_rules([str(extra)])
    assert rules.match("buy our mugs today") == "house_ads"
    assert rules.match("mail me") == "newsletter"
    assert rules.match(fold_line("Sign up now: Get ST's newsletters delivered to your inbox")) == "newsletter"


@pytest.mark.parametrize("content, message", [
    ("[rules.bad]\nen = ['(unclosed']\n", "bad pattern"),
    ("rules = 3\n", "expected"),
    ("[rules.Bad-Name]\nen = ['x']\n", "lower_snake_case"),
    ("not toml at all [", "not valid TOML"),
])
def test_bad_rule_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        load_rules([str(path)])
    assert "bad.toml" in str(err.value)


# Every rule kind, in several languages (hand-written lines, not copies of any corpus).
@pytest.mark.parametrize("line, rule", [
    ("Subscribe to the morning briefing for free", "newsletter"),
    ("Inscrivez-vous à notre lettre quotidienne", "newsletter"),
    ("Đăng ký nhận bản tin buổi sáng", "newsletter"),
    ("Подпишитесь на наш канал в Telegram", "newsletter"),
    ("Lire aussi : Le budget de la ville adopté", "read_more"),
    ("Baca juga: Harga beras naik lagi", "read_more"),
    ("Xem thêm: Giá xăng giảm mạnh", "read_more"),
    ("» Die Bahn erhöht die Preise", "read_more_arrow"),
    (">> Giá vàng hôm nay", "read_more_arrow"),
    ("Фото: ТАСС", "photo_credit"),
    ("(Photo: Jane Doe/Reuters)", "photo_credit"),
    ("Người dân xếp hàng chờ tiêm vắc xin tại quận 1 (Ảnh: Minh Anh).", "photo_caption"),
    ("Rescuers search the rubble after the quake. Photo: Kyodo", "photo_caption"),
    ("Siguenos en Instagram", "follow"),
    ("Folgen Sie uns auf Mastodon", "follow"),
    ("Compartilhar", "share"),
    ("Поделиться", "share"),
    ("分享到：", "share"),
    ("Wir verwenden Cookies, um unsere Website zu verbessern.", "cookie"),
    ("Este sitio web usa cookies propias y de terceros.", "cookie"),
    ("12.5K views", "views"),
    ("Lượt đọc: 1.204", "views"),
    ("Bewertung: 4,5 von 5 Sternen", "rating"),
    ("Rate this story", "rating"),
    ("Bình luận (12)", "comments"),
    ("Commentaires (3)", "comments"),
    ("Publicidade", "ads"),
    ("Sponsored", "ads"),
    ("Most popular", "related"),
    ("Noticias relacionadas", "related"),
    ("Updated 12/03/2024 10:15", "ui_meta"),
    ("4 min read", "ui_meta"),
    ("Veröffentlicht am 3. Mai 2024", "ui_meta"),
    ("Tous droits réservés", "copyright"),
    ("Printer-friendly version", "print"),
    ("In bài viết", "print"),
    ("March 3, 2024 10:15 am", "dateline"),
    # prompts and fine print inside the article container that trafilatura keeps
    ("Morning Briefing Newsletter", "newsletter"),
    ("Never miss a story: sign up for our daily alerts", "newsletter"),
    ("Zum Weiterlesen:", "read_more"),
    ("Weitere Infos unter www.example.org.", "read_more"),
    ("Hier geht es zur Bildergalerie", "read_more"),
    ("Notas relacionadas", "related"),
    ("Más sobre Economía", "related"),
    ("Next article", "related"),
    ("Weitere aktuelle Themen aus der Region", "related"),
    ("Top-Artikel bei Example Online", "related"),
    ("Schon gelesen?", "read_more"),
    ("Category: Press Releases", "ui_meta"),
    ("Bild vergrößern", "ui_meta"),
    ("EXAMPLENEWS.COM", "ui_meta"),
    ("Symbolbild: Max Muster/Agentur", "photo_credit"),
    ("Photo d'illustration : Jean Dupont / AFP", "photo_credit"),
    ("Your email address will not be published. Required fields are marked *", "comments"),
    ("Ihre E-Mail-Adresse wird nicht veröffentlicht.", "comments"),
    ("Schreiben Sie uns Ihre Meinung in den Kommentaren!", "comments"),
    ("Loading...", "ui_meta"),
    ("Wird geladen …", "ui_meta"),
    ("This story is the copyrighted property of Example Media Ltd.", "copyright"),
    ("To read the full article, subscribe for $1 a week.", "paywall"),
    ("If you're already a subscriber, please log in.", "paywall"),
    ("Du bist nicht angemeldet.", "paywall"),
    ("Este contenido es exclusivo para suscriptores", "paywall"),
    ("Download our news app for iOS and Android", "promo"),
    ("Únete a nuestro canal de WhatsApp para recibir las noticias", "promo"),
    ("Abonnieren Sie unseren Telegram-Kanal", "promo"),
    ("Submit your photo of the week", "promo"),
    ("Support independent journalism: give what you can", "donation"),
    ("Unterstützen Sie unsere Arbeit jetzt mit einer Spende", "donation"),
    ("We may earn a commission when you buy through links on our site.", "disclosure"),
    ("Dieser Artikel enthält Affiliate-Links.", "disclosure"),
    ("(Alle Angaben ohne Gewähr)", "disclosure"),
    ("Listen to this article", "listen"),
    ("Escucha esta nota", "listen"),
    ("Pressekontakt:", "contact"),
    ("Ansprechpartnerin zum Thema:", "contact"),
    ("Media contact:", "contact"),
    ("Pressesprecherin Anna Beispiel", "contact"),
    ("Weitere Informationen zum Hochwasser in Sachsen:", "read_more"),
    ("Zusatzinformationen:", "read_more"),
    ("Weitere Infos dazu gibt es bald auf unserer Website.", "read_more"),
    ("Let us know what you think in the comments", "comments"),
    ("Verraten Sie uns gerne in den Kommentaren: Welches Rezept aus dieser Reihe mögen Sie am liebsten?", "comments"),
    ("Dites-nous en commentaire ce que vous en pensez", "comments"),
    ("Montag, 3. Februar 2025, 10:30 Uhr | Lokales", "dateline"),
    ("12 de octubre de 2023", "dateline"),
    ("By signing up, you agree to our Terms of Use and Privacy Policy.", "consent"),
    ("Ich bin mit der Speicherung meiner Daten gemäß Datenschutzerklärung einverstanden.", "consent"),
    ("Mit der Anmeldung akzeptieren Sie unsere Datenschutzbestimmungen.", "consent"),
    ("En vous inscrivant, vous acceptez nos conditions d'utilisation.", "consent"),
    ("kb/dpa", "photo_credit"),
    ("(AFP/red)", "photo_credit"),
    ("Die Siegerin des Wettbewerbs mit ihrer Skulptur | © Stadtmuseum", "photo_caption"),
    ("Erschienen in:", "ui_meta"),
    ("Über den Autor", "ui_meta"),
    ("About the author", "ui_meta"),
    ("Quelle: Statistisches Landesamt", "ui_meta"),
    ("Source: company filings", "ui_meta"),
    ("Aus dem Forum", "related"),
    ("Follow Example Daily on Twitter and Instagram @exampledaily and on Facebook @ExampleDaily. Send us your "
     "news tips by email at any time of the day.", "promo"),
    ("Mehr auf beispiel-magazin.de", "promo"),
    ("Werden Sie Mitglied und erhalten Sie exklusive Angebote!", "promo"),
    ("This article was medically reviewed by Dr. Jane Example.", "disclosure"),
    ("Dieser Ratgeber entspricht den Vorgaben aktueller Leitlinien.", "disclosure"),
    ("Your browser is out of date.", "browser"),
    ("Bitte aktivieren Sie JavaScript, um die Karte zu sehen.", "browser"),
    ("It looks like you're using an ad blocker.", "browser"),
])
def test_rule_kinds_in_several_languages(line, rule):
    assert RULES.match(fold_line(line), fold_line(line) if rule != "read_more_arrow" else line.lower()) == rule


@pytest.mark.parametrize("line", [
    "The photo was taken minutes before the bridge collapsed, the agency said.",
    "She shared the prize with two colleagues from the institute.",
    "Views differ on whether the tax will raise as much as the minister hopes.",
    "Ông cho biết công ty sẽ tiếp tục theo dõi tình hình trong những tuần tới.",
    "Die Regierung will die Cookies-Richtlinie der EU bis zum Sommer umsetzen, sagte die Ministerin.",
    "Más de 300 personas marcharon el domingo por el centro de la ciudad.",
    "Subscribers to the service will pay more from March, the company said.",
    "The app is available for iOS and Android, and downloads doubled last year.",
    "Supporters of the plan gathered outside city hall on Monday to cheer the vote.",
    "Weitere Informationen gab die Polizei zunächst nicht bekannt.",
    "Listen to the people who live here, the mayor told the council.",
    "Weitere Themen der Sitzung waren der Haushalt und die neue Schule.",
    "Example.com said on Monday that its sales rose by a fifth.",
    "Kontakt zu den Entführern gab es seit Tagen nicht mehr.",
    "Contact us if you saw the accident, police said.",
    "Am 24. März 2004 wurde das Gesetz im Landtag verabschiedet.",
    "I agree that the terms of the deal are fair, the minister said.",
    "Der Impfstoff wurde von Experten geprüft und ist sicher, sagte der Minister.",
    "Wer einen Adblocker nutzt, sieht weniger Werbung, zeigt eine neue Studie.",
    "Sources said the talks would continue next week.",
    "Pressesprecher der Stadt ist seit Jahren ein ehemaliger Journalist.",
    "Many readers use an older browser at work, the survey found.",
])
def test_prose_mentioning_furniture_words_is_kept(line):
    assert RULES.match(fold_line(line)) is None


BODY = ("The council approved the budget on Tuesday after a long debate.\n\n"
        "Construction of the two bridges will start in March, the mayor said.")


def test_edge_fragments_go_title_and_prose_stay():
    text = "City approves budget\n\nKuchen im Glas\n\n" + BODY + "\n\nMeistgeklickte Videos\n\nSoziale Netzwerke"
    cleaned, removed = strip_boilerplate(text, RULES, title="City approves budget")
    assert cleaned == "City approves budget\n\n" + BODY
    assert removed == ["edge_fragment"] * 3


@pytest.mark.parametrize("tail", ["Reporting by Jane Doe; Editing by John Roe", "Nguyễn Văn An - Trần Thị Mai",
                                  "Theo Reuters", "Hotline: 1900 1234 56", "The case continues."])
def test_edge_pass_keeps_credits_contacts_and_sentences(tail):
    cleaned, removed = strip_boilerplate(BODY + "\n\n" + tail, RULES)
    assert cleaned.endswith(tail) and removed == []


def test_edge_pass_keeps_a_split_paragraph_and_texts_made_of_fragments():
    split = "The council approved the budget\n\non Tuesday after a long debate.\n\n" + BODY
    assert strip_boilerplate(split, RULES)[0] == split
    lines = "Apples\nPears\nCherries"
    assert strip_boilerplate(lines, RULES)[0] == lines
    assert strip_boilerplate(BODY + "\n\nSoziale Netzwerke", RULES, edges=False)[0].endswith("Netzwerke")


def test_bad_on_value_is_refused(tmp_path):
    path = tmp_path / "on.toml"
    path.write_text("[rules.x]\non = 'sideways'\nen = ['^x$']\n")
    with pytest.raises(ValueError, match="on must be"):
        load_rules([str(path)])


VI_BODY = ("Hội đồng thành phố đã thông qua ngân sách mới vào thứ Ba sau một cuộc tranh luận dài về giao thông.\n\n"
           "Các thành viên hội đồng cho biết kế hoạch sẽ bổ sung mười hai tuyến xe buýt mới và sửa chữa ba cây cầu "
           "trước cuối năm sau, đồng thời giữ nguyên mức thuế tài sản hiện tại.")


def test_a_foreign_widget_line_at_the_edge_goes():
    text = VI_BODY + "\n\nNotify me of new posts by email and push."
    cleaned, removed = strip_boilerplate(text, RULES)
    assert cleaned == VI_BODY and removed == ["edge_fragment"]
    # the same line under an English article is a sentence: kept
    assert strip_boilerplate(BODY + "\n\nNotify me of new posts by email and push.", RULES)[1] == []


def test_a_short_sentence_goes_only_inside_a_furniture_block():
    assert strip_boilerplate(BODY + "\n\nWant more?\n\nAdvertisement", RULES)[1] == ["edge_fragment", "ads"]
    assert strip_boilerplate(BODY + "\n\nWant more?", RULES)[1] == []


def test_removed_lines_are_reported_and_ranked():
    from wirewash.transforms.boilerplate import removed_line_form, top_lines_by_rule

    heard = []
    strip_boilerplate("Read more: A\nBody line one is here.\nPHOTO: AFP", RULES,
                      on_removed=lambda rule, line: heard.append((rule, line)))
    assert heard == [("read_more", "Read more: A"), ("photo_credit", "PHOTO: AFP")]
    assert removed_line_form("  a   b ") == "a b" and len(removed_line_form("x" * 500)) == 100
    ranked = [("views", [(1, "b"), (3, "a"), (1, "a2")]), ("ads", [(2, "Advertisement")])]
    assert top_lines_by_rule(ranked) == {"ads": {"Advertisement": 2}, "views": {"a": 3, "a2": 1, "b": 1}}
    assert list(top_lines_by_rule(ranked)["views"]) == ["a", "a2", "b"]


@pytest.mark.parametrize("tail, rules", [
    # below a share bar: a footer, whatever the shape of its lines
    ("Share this article\n\nWas this page useful? Tell us what you think.", ["share", "furniture_block"]),
    ("Kommentare (3)\n\nWie hat Ihnen der Artikel gefallen?\n\nNoch keine Einträge vorhanden.",
     ["comments", "furniture_block", "furniture_block"]),
    ("© 2024 Example Media\n\nmit freundlicher Unterstützung von", ["copyright", "furniture_block"]),
])
def test_lines_between_footer_furniture_and_the_end_go(tail, rules):
    cleaned, removed = strip_boilerplate(BODY + "\n\n" + tail, RULES)
    assert cleaned == BODY and removed == rules


def test_lines_between_the_title_and_header_furniture_go_the_title_stays():
    text = "Budget approved\n\nNur für Abonnenten lesbar.\n\nFollow us on Facebook\n\n" + BODY
    cleaned, removed = strip_boilerplate(text, RULES, title="Budget approved")
    assert cleaned == "Budget approved\n\n" + BODY and removed == ["furniture_block", "follow"]
    # a first paragraph that the title was cut from is the title too
    lead = "Budget approved after a night of talks."
    text = lead + "\n\nFollow us on Facebook\n\n" + BODY
    assert strip_boilerplate(text, RULES, title="Budget approved")[0] == lead + "\n\n" + BODY


@pytest.mark.parametrize("text", [
    # a paragraph (or a caption longer than a widget) between the furniture and the edge: the body goes on
    BODY + "\n\nShare this article\n\nThe council will publish the full list of the twelve new bus lines and "
           "their timetables on its website next week.",
    # read-more links, photo credits and ads sit between paragraphs: they frame nothing
    BODY + "\n\nRead more: Budget row\n\nThe vote is expected next week, the mayor said.",
    BODY + "\n\nPHOTO: AFP\n\nThe vote is expected next week, the mayor said.",
    # no paragraph at all: nothing tells a footer from the body
    "Apples are cheap.\n\nShare\n\nPears are dear.",
])
def test_furniture_block_stops_at_paragraphs_and_needs_framing_furniture(text):
    cleaned, removed = strip_boilerplate(text, RULES)
    assert "furniture_block" not in removed
    assert cleaned.splitlines()[-1] == text.splitlines()[-1]


def test_a_hyphenated_word_is_no_author_pair():
    cleaned, removed = strip_boilerplate(BODY + "\n\nOnline-Archiv", RULES)
    assert cleaned == BODY and removed == ["edge_fragment"]
    assert strip_boilerplate(BODY + "\n\nLê Minh - Trần Thanh", RULES)[1] == []


def test_a_lower_case_widget_is_no_second_half_of_a_paragraph():
    cleaned, removed = strip_boilerplate(BODY + "\n\nMehr Geschichten aus\n\nunserer Region", RULES)
    assert cleaned == BODY and removed == ["edge_fragment"] * 2
    # a paragraph split in two keeps both halves, also when it ends with an agency credit
    for tail in ("The talks ended without\n\nan agreement on the border.",
                 "The talks ended without\n\nan agreement on the border. REUTERS"):
        assert strip_boilerplate(BODY + "\n\n" + tail, RULES)[0] == BODY + "\n\n" + tail


def test_edge_fragments_are_shorter_at_the_top_than_at_the_bottom():
    kicker = "Residents of the old harbour district want answers now"  # 9 words: a kicker, not a widget
    text = "Budget approved\n\n" + kicker + "\n\n" + BODY
    assert strip_boilerplate(text, RULES, title="Budget approved")[1] == []
    assert strip_boilerplate(BODY + "\n\nMehr Nachrichten aus der Region und aus aller Welt", RULES)[1] == \
        ["edge_fragment"]
    assert strip_boilerplate(BODY + "\n\nDie wichtigsten Nachrichten aus der Region und aus aller Welt", RULES)[1] == []


@pytest.mark.parametrize("line", [
    "Chỉ số giảm mạnh trong phiên chiều nay (Ảnh chụp màn hình).",
    "Die Feuerwehr konnte den Brand erst am Abend löschen (Foto von Anna Berg)",
    # a long caption: 45 words before the credit
    " ".join(["Rescue teams worked through the night to reach the villages cut off by the flood,"] * 3)
    + " officials said (Photo: Reuters).",
])
def test_captions_ending_in_a_photo_parenthesis_go(line):
    assert RULES.match(fold_line(line)) == "photo_caption"


def test_a_paragraph_mentioning_a_photo_in_brackets_midway_stays():
    line = "The photo (taken in 2018) shows the bridge before the flood, the agency said."
    assert RULES.match(fold_line(line)) is None


@pytest.mark.parametrize("line", [
    "»Vi skal smage på verden, hvis vi vil lære noget.« siger kokken.",
    "»Das war ein langer Abend«, sagte die Ministerin nach der Abstimmung.",
    "»Wir haben die ganze Nacht über die Verhandlungsergebnisse, die Übergangsfristen und die "
    "Entschädigungszahlungen für die betroffenen Gemeinden gesprochen und am Morgen",  # a quote going on
])
def test_a_quotation_opened_with_guillemets_is_no_teaser(line):
    assert RULES.match(fold_line(line), line.lower()) is None


@pytest.mark.parametrize("line, rule", [
    ("Quelle: Foto Anna Berg", "photo_credit"),
    ("Nguồn: Ảnh Minh Anh", "photo_credit"),
    ("Radio Beispiel © 2011-2023", "copyright"),
])
def test_source_photo_lines_and_a_name_before_the_copyright_sign(line, rule):
    assert RULES.match(fold_line(line)) == rule
    # a plain source line under a story or a chart is page metadata; the photo rule names a picture's source
    assert RULES.match(fold_line("Quelle: dpa")) == "ui_meta"


def test_an_unspaced_paragraph_below_footer_furniture_stays():
    paragraph = "市政府周二在长时间辩论后批准了明年的预算，其中包括十二条新的公交线路和三座桥梁的维修计划，" \
                "市长表示工程将于三月开工，并在年底前完成大部分路段的施工。"  # 74 characters, no space: a paragraph
    cleaned, removed = strip_boilerplate(BODY + "\n\n分享\n\n" + paragraph, RULES)
    assert cleaned.endswith(paragraph) and "furniture_block" not in removed


def test_a_list_page_keeps_its_longer_items():
    calendar = ("Race calendar\nRound 1: 10 March – Lisbon\nRound 2: 8 April – the old harbour circuit of Porto city\n"
                "Round 3: 22 April – Braga\nRound 4: 6 May – Faro")  # one item is longer than the bottom bound
    assert strip_boilerplate(calendar, RULES) == (calendar, [])


def test_the_edge_pass_runs_on_text_records_not_on_extracted_pages():
    """trafilatura chose an HTML page's lines by the page's structure: the edge pass, which guesses from line
    shapes, does not second-guess it. Rules and learned lines still apply to both."""
    text = BODY + "\n\nZutaten für 4 Personen\n\nAdvertisement"
    articles = [Article("t", "a.jsonl:1", FORMAT_TEXT, text=text), Article("h", "a.jsonl:2", FORMAT_HTML, text=text)]
    assert [edge_pass_applies(a) for a in articles] == [True, False]
    with TestPipeline() as p:
        out = p | beam.Create(articles) | StripBoilerplate(learn=False)
        assert_that(out["articles"] | beam.Map(lambda a: (a.doc_id, a.text)), equal_to([
            ("t", BODY), ("h", BODY + "\n\nZutaten für 4 Personen")]))


def test_packaged_patterns_are_written_in_folded_form():
    """Lines are casefolded before matching ("ß" -> "ss", "İ" -> "i̇"): a pattern holding a character that
    casefolding changes could never match. Escapes (\\S, \\W...) are not text."""
    tables = tomllib.loads(resources.files("wirewash.transforms.rules").joinpath("boilerplate.toml").read_text("utf-8"))
    unfoldable = [(name, pattern) for name, table in tables["rules"].items() if table.get("on") != "raw"
                  for patterns in table.values() if isinstance(patterns, list) for pattern in patterns
                  if (text := re.sub(r"\\[A-Za-z]", "", pattern)) != text.casefold()]
    assert unfoldable == []


@pytest.mark.parametrize("pattern, needles", [
    (r"\b(we|this (web)?site|our (web)?site) uses? cookies\b", (" cookies",)),
    (r"\b(contains|includes) affiliate links?\b", (" affiliate link",)),
    (r"\S\s*[|/]\s*(©|\(c\))\s*\w+$", ("(c)", "©")),
    (r"\bcookies\b.{0,60}(zustimmen|akzeptieren)", ("akzeptieren", "zustimmen")),
    (r"^(read more|see also)\b", ("read more", "see also")),  # anchored too: each RE2 call has a cost
    (r"\b(we|us)\b\s*\d+", ()),  # "we", "us": in nearly every line, no gate
    (r"(?i)\ball rights reserved\b", ()),  # case-insensitive: a substring test could miss
    (r"\bfoo (?i:BAR)\b", ("foo ",)),  # ...and so could one on a case-insensitive group
])
def test_required_substrings_gate_patterns(pattern, needles):
    assert required_substrings(pattern) == needles


@pytest.mark.parametrize("pattern, starts", [
    (r"^(read more|see also)\b", frozenset("rs")),
    (r"^(jetzt )?(kostenlos )?(registrieren|anmelden)$", frozenset("jkra")),  # optional parts: their start too
    (r"^\d+\s*min$", frozenset({"\\d"})),
    (r"^\s*»\s*\S", frozenset({"\\s", "»"})),
    (r"^(\w+,?\s+)?\d{1,2}\.", None),  # \w: any letter, no gate
    (r"^(a)?$", None),  # may match an empty line start: no gate
    (r"read more", None),  # not anchored
    (r"(?i)^read", None),  # case-insensitive
])
def test_first_chars_gate_anchored_patterns(pattern, starts):
    assert first_chars(pattern) == starts


def test_the_gate_never_changes_a_decision():
    """Every packaged pattern, gated and ungated, on lines made to hit, nearly hit and miss the gated ones."""
    ungated = RuleSet(tuple(dataclasses.replace(rule, needs=(), starts=None) for rule in RULES.rules))
    gated = [rule for rule in RULES.rules if rule.needs]
    assert len(gated) >= 40
    lines = [f"some text {needle} more text" for rule in gated for needle in rule.needs]
    lines += [needle for rule in gated for needle in rule.needs] + [
        "We use cookies to improve this site.", "Diese Website verwendet Cookies. Bitte zustimmen.",
        "Siegerin mit Skulptur | © Stadtmuseum", "This post contains affiliate links.",
        "The council approved the budget on Tuesday after a long debate.",
        "Ihre E-Mail-Adresse wird nicht veröffentlicht.", "Tous droits réservés", "5 min read", "» Headline here",
        "12.03.2024, 10:15", "Montag, 3. März 2024", "(Photo: Jane Doe)", "AFP/Getty Images"]
    lines += [line[1:] for line in lines] + [line.upper() for line in lines]
    for line in lines:
        folded = fold_line(line)
        assert RULES.match(folded, raw_fold(line)) == ungated.match(folded, raw_fold(line)), line


def test_unspaced_list_lines_at_the_bottom_are_no_fragments():
    """A Japanese or Chinese line has no spaces: counted as one word, every list line under a bulletin was a
    "fragment" and went. Counted at two characters a word, a list line is prose-sized; a short heading
    between them ("＜北地区＞") cannot start a run alone."""
    text = ("市役所は5日、新しい図書館の開館時間を発表した。平日は午前9時から午後8時まで開館する。\n"
            "各分館の開館日は次のとおり。\n"
            "＜北地区＞\n"
            "北分館：月曜、水曜、金曜、土曜、日曜の午前10時から午後6時まで\n"
            "南分館：火曜、木曜、土曜の午前9時から午後5時まで、祝日は休館")
    cleaned, removed = strip_boilerplate(text, RULES)
    assert (cleaned, removed) == (text, [])
    # a short unspaced widget at the bottom still goes
    cleaned, removed = strip_boilerplate(text + "\n相关推荐", RULES)
    assert (cleaned, removed) == (text, ["edge_fragment"])


# The rules pass's gate and decision cache (speed only): `match_line` answers as `plain_match_line` does.
_FURNITURE_LINES = [needle for rule in RULES.rules for needle in rule.needs][:200] + [
    "We use cookies to improve this site.", "Foto: dpa", "Advertisement", "» Headline here", "58 lượt xem",
    "Read more: Joe Biden Addresses Russia Mutiny Concerns", "© 2023 Example Media. All rights reserved."]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.one_of(
    st.sampled_from(_FURNITURE_LINES),
    st.tuples(st.sampled_from(["", "  • ", "» ", "- ", "#"]), st.sampled_from(_FURNITURE_LINES),
              st.integers(0, 70)).map(lambda t: t[0] + t[1] + " word" * t[2]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)), min_size=1, max_size=30))
def test_the_decision_cache_and_word_gate_never_change_a_decision(lines):
    """Furniture lines, with edge marks and padded past every rule's word limit, and arbitrary text; each line
    asked twice (the second answer comes from the cache)."""
    for line in lines + lines:
        assert match_line(RULES, line) == plain_match_line(RULES, line), line


def test_the_word_gate_stops_exactly_above_the_largest_limit(monkeypatch):
    """A rule that matches any line up to 3 words: a 3-word line is its, a 4-word line no rule's; the cache
    stays within its bound and keeps answering right once emptied."""
    rules = RuleSet((Rule("any", compile_linear("."), 3),))
    monkeypatch.setattr(boilerplate, "DECISION_CACHE_LINES", 4)
    assert rules.max_words == 3
    for n in range(1, 12):
        line = " ".join([f"w{n}"] * (n % 5 + 1))
        expected = "any" if n % 5 + 1 <= 3 else None
        assert match_line(rules, line) == expected == plain_match_line(rules, line), line
        assert len(rules.decisions) <= 4


# Kind patterns (issue 20, held-out wording): each pattern holds one kind of furniture in several languages, so that
# a wording nobody wrote down is caught by the kind.
@pytest.mark.parametrize("line, rule", [
    # the account wall: an account verb and what it unlocks
    ("Subscribe today to our digital edition for the full story.", "paywall"),
    ("Jetzt registrieren und weiterlesen", "paywall"),
    ("Abonnez-vous pour lire la suite de cet article", "paywall"),
    ("Suscríbete y sigue leyendo la nota completa", "paywall"),
    ("Para ler a matéria completa, assine o jornal.", "paywall"),
    ("To read the rest of this article, please log in.", "paywall"),
    ("Sie sind derzeit nicht angemeldet.", "paywall"),
    ("Cet article est réservé aux abonnés.", "paywall"),
    # reproduction rights
    ("Reproduction of this article without written permission is prohibited.", "copyright"),
    ("Nachdruck nur mit schriftlicher Genehmigung des Verlags.", "copyright"),
    ("Reproduction interdite sans autorisation.", "copyright"),
    ("Prohibida su reproducción total o parcial.", "copyright"),
    ("All content on this page is the exclusive property of Example Media.", "copyright"),
    # the fine print: advertising disclosures, liability disclaimers
    ("Dieser Artikel enthält Affiliate-Links.", "disclosure"),
    ("This post contains sponsored links.", "disclosure"),
    ("Cet article contient des liens d'affiliation.", "disclosure"),
    ("Alle Preise ohne Gewähr", "disclosure"),
    ("Änderungen und Irrtümer vorbehalten.", "disclosure"),
    ("Salvo error u omisión.", "disclosure"),
    ("Information without guarantee", "disclosure"),
    # the site's own channels and reader submissions
    ("Submit your photos to our newsroom", "promo"),
    ("Schicken Sie uns Ihre Hinweise per E-Mail", "promo"),
    ("Envíanos tu denuncia por WhatsApp", "promo"),
    ("Folgen Sie unserem WhatsApp-Kanal", "promo"),
    ("Join our Telegram channel for breaking news", "promo"),
    ("Entre no nosso grupo do WhatsApp", "promo"),
    # the comment section: counts, status, prompts
    ("12 Kommentare", "comments"),
    ("Commentaires (3)", "comments"),
    ("Noch keine Kommentare", "comments"),
    ("Sagen Sie uns Ihre Meinung in den Kommentaren!", "comments"),
    ("Dites-nous ce que vous en pensez dans les commentaires", "comments"),
    ("Cuéntanos en los comentarios qué opinas", "comments"),
    # pointers to more information on a website
    ("Weitere Informationen unter www.example.de", "read_more"),
    ("More information on our website", "read_more"),
    ("Más información en https://example.es", "read_more"),
    ("Zusatzinformationen:", "read_more"),
    # contact labels and press officers
    ("Ufficio stampa:", "contact"),
    ("Porte-parole : Jean Martin", "contact"),
    ("Press officer Jane Doe", "contact"),
    # "more about <topic>" headings
    ("Más sobre Economía", "related"),
    ("Mehr zu Fußball", "related"),
    ("Plus sur l'Europe", "related"),
])
def test_kind_patterns_catch_unseen_wordings(line, rule):
    assert match_line(RULES, line) == rule


@pytest.mark.parametrize("line", [
    # news sentences about the same subjects, and a blog speaking to its readers: prose, kept
    "The newspaper said it would subscribe to the wire service for the full season of coverage, at a cost of $2m.",
    "Subscriptions rose by 12% last year as readers paid for the full story behind the headlines, the company said.",
    "The court ruled that the reprint of the photographs without permission had violated the photographer's rights, "
    "and awarded damages.",
    "Der Verlag hatte den Nachdruck des Romans ohne Genehmigung der Erben veröffentlicht, sagte die Richterin.",
    "Le tribunal a jugé que la reproduction de l'œuvre sans autorisation constituait une contrefaçon.",
    "Die Preise sind ohne Gewähr auf Vollständigkeit von der Behörde veröffentlicht worden, heißt es im Bericht.",
    "Wenn ihr Fragen habt, schreibt mir gern – ich freue mich über jede Nachricht von euch!",
    "We hope you enjoy this release as much as we enjoyed building it.",
    "The ministry said its Telegram channel had been hacked on Tuesday and false statements were posted.",
    "Hunderte Leser diskutierten in den Kommentaren über den Vorschlag, der im Stadtrat umstritten ist.",
    "Mehr Informationen über die Ursache des Unfalls lagen der Polizei am Abend noch nicht vor.",
    "More about the plan will be announced next week, the minister told reporters in Brussels.",
    "Más de 300 detenidos tras las protestas",  # "more than": a headline, not "more about <topic>"
])
def test_kind_patterns_keep_prose_on_the_same_subjects(line):
    assert match_line(RULES, line) is None


@pytest.mark.parametrize("line, mixed", [
    ("Yоur соntеnt іѕ dеlіvеrеd tо thоuѕаndѕ оf rеаdеrѕ!", True),  # о, е, і, ѕ, а: Cyrillic look-alikes
    ("Соntасt uѕ аt ads@example.com оr саll 555-0100.", True),
    ("Besuchen Sie unsеren Shоp für аlle Angebоte", True),
    ("Apple представила новый iPhone 15 и iPad Pro.", False),  # a word of each script: no join
    ("Компания запустила Google-поиск для бизнеса", False),
    ("Москва — столица России.", False),
    ("Nguyễn Văn An đến Hà Nội hôm qua.", False),
    ("Plain ASCII English line.", False),
    ("Только одно слoво с латинской буквой", False),  # one join: a typo, not an obfuscated line
])
def test_mixed_script_lines_are_look_alike_text(line, mixed):
    assert boilerplate.is_mixed_script(line) == mixed


def test_a_mixed_script_line_is_removed_and_counted():
    text = "Kingston, Jamaica. The minister opened the new port on Monday.\n" \
           "Соntасt uѕ аt ads@example.com оr саll 555-0100.\n" \
           "Москва — столица России, сказал он."
    cleaned, removed = strip_boilerplate(text, RULES, edges=False)
    assert removed == [boilerplate.MIXED_RULE]
    assert "Соntасt" not in cleaned and "Москва" in cleaned and "minister" in cleaned


def test_a_kind_pattern_of_many_alternatives_is_still_gated():
    """Up to `MAX_NEEDLES` (32) literal strings gate a pattern: a kind pattern in several languages lists more words
    than one language's pattern did, and without a gate it would be tried on every line."""
    words = [f"{chr(97 + i)}{i:02d}x" for i in range(20)]  # no common prefix: 20 needles
    assert required_substrings(r"\b(" + "|".join(words) + r")\b") == tuple(sorted(words))
    assert required_substrings(r"\b(" + "|".join(f"{chr(97 + i % 26)}{i:02d}x" for i in range(40)) + r")\b") == ()


# The folds before they were made faster (one regex pass over the spaces): the references they are held to.
_SPACE_RUNS = re.compile(r"\s+")
_FOLD_TEXT = st.text(st.one_of(st.sampled_from(list(" \t\n\r\x0b\x0c\x1c\x85\xa0\u1680\u2000\u2028\u3000\u200b"
                                                   "•·-–—*#>|»«→★✓ﬁＡ①Σß")), st.characters()), max_size=60)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(_FOLD_TEXT)
def test_folds_equal_their_one_regex_pass_reference(line):
    """`fold_line` and `raw_fold` (split and join) fold every line as the regex pass over its spaces did."""
    import unicodedata

    from wirewash.transforms.text import _EDGE_MARKS

    folded = unicodedata.normalize("NFKC", line).casefold()
    assert fold_line.__wrapped__(line) == _SPACE_RUNS.sub(" ", folded).strip(_EDGE_MARKS)
    assert raw_fold(line) == _SPACE_RUNS.sub(" ", folded).strip()
