"""Readers of the public datasets: every language a benchmark names must actually be read."""

from __future__ import annotations

from pathlib import Path

from semroute.training.sources import SharedData

# xSID's two layouts, as shipped: the Turkish file numbers its sentences and repeats the English
# source; the English file has neither line, and lists the same sentences in the same order.
_TR = """# id = 1
# text-en = show all reminders
# text = tüm hatırlatıcıları göster
# intent = reminder/show_reminders
1\ttüm\treminder/show_reminders\tB-reference
2\thatırlatıcıları\treminder/show_reminders\tO
3\tgöster\treminder/show_reminders\tO

# id = 2
# text-en = Is it going to rain today?
# text = Bugün yağmur yağacak mı?
# intent = weather/find
1\tBugün\tweather/find\tB-datetime
2\tyağmur\tweather/find\tB-weather/attribute
3\tyağacak\tweather/find\tO
4\tmı\tweather/find\tO
5\t?\tweather/find\tO
"""
_EN = """# text = show all reminders
# intent = reminder/show_reminders
# slots: 5:8:reminder/reference
1\tshow\treminder/show_reminders\tO
2\tall\treminder/show_reminders\tB-reference
3\treminders\treminder/show_reminders\tO

# text = Is it going to rain today?
# intent = weather/find
# slots: 15:19:weather/attribute,20:25:datetime
1\tIs\tweather/find\tO
2\tit\tweather/find\tO
3\tgoing\tweather/find\tO
4\tto\tweather/find\tO
5\train\tweather/find\tB-weather/attribute
6\ttoday\tweather/find\tB-datetime
7\t?\tweather/find\tO
"""


def _data(tmp_path: Path) -> SharedData:
    (tmp_path / "xsid_en_tr").mkdir()
    (tmp_path / "xsid_en_tr" / "tr.test.conll").write_text(_TR, encoding="utf-8")
    (tmp_path / "xsid_en_tr" / "en.test.conll").write_text(_EN, encoding="utf-8")
    return SharedData(tmp_path)


def test_xsid_english_sentences_are_read_and_numbered_like_their_turkish_twins(tmp_path: Path) -> None:
    # The English file has no "# id" lines: it was read as empty, so no English xSID pair ever
    # reached training or a benchmark.
    data = _data(tmp_path)
    english, turkish = data.xsid("en", "test"), data.xsid("tr", "test")
    assert [(s["id"], s["text"]) for s in english] == [("1", "show all reminders"), ("2", "Is it going to rain today?")]
    assert [s["id"] for s in turkish] == ["1", "2"]
    assert english[1]["slots"] == [("weather/attribute", 4, 5), ("datetime", 5, 6)]
    assert english[1]["intent"] == turkish[1]["intent"] == "weather/find"


def test_xsid_turkish_sentences_keep_their_own_ids(tmp_path: Path) -> None:
    turkish = _data(tmp_path).xsid("tr", "test")
    assert turkish[0]["text"] == "tüm hatırlatıcıları göster"
    assert turkish[1]["slots"] == [("datetime", 0, 1), ("weather/attribute", 1, 2)]
