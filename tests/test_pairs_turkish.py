"""Turkish in the pair features: suffixes, dotted and dotless i, negation, opposites and same-kind swaps."""

from __future__ import annotations

import pytest

from semroute.hits.pairs import FEATURE_NAMES, PairFeatures, analyse, is_turkish, lower, stem


def _features(query: str, cached: str) -> dict[str, float]:
    x = PairFeatures({}, default_idf=1.0)(query, cached, None, 0.9)
    return dict(zip(FEATURE_NAMES, x))


def test_turkish_lowercasing_keeps_dotted_and_dotless_i_apart():
    assert lower("IŞIKLARI KAPAT") == "ışıkları kapat"
    assert lower("İSTANBUL'DA HIZ SINIRI") == "istanbul'da hız sınırı"
    assert lower("İzmir") == "izmir"  # no combining dot left behind
    assert lower("Can I park here?") == "can i park here?"  # English I stays i
    assert analyse("IŞIK").content == analyse("ışık").content
    assert analyse("İZMİR'DE HAVA").content == analyse("İzmir'de hava").content


@pytest.mark.parametrize(("inflected", "root"), [
    ("otoyolda", "otoyol"), ("köyden", "köy"), ("şehirde", "şehir"), ("otoyola", "otoyol"),
    ("kamyonlar", "kamyon"), ("otobüsler", "otobüs"), ("cezası", "ceza"), ("arabayla", "araba"),
    ("şehirdeki", "şehir"), ("yollarda", "yol"), ("zorunludur", "zorunlu"),
])
def test_suffixes_are_stripped_to_one_root(inflected, root):
    assert stem(inflected, turkish=True) == stem(root, turkish=True)


def test_short_or_vowelless_roots_are_left_alone():
    assert stem("ada", turkish=True) == "ada"  # no 3-letter root would remain
    assert stem("otobüs", turkish=False) != stem("otobüs", turkish=True) or stem("otobüs", True) == "otobus"


def test_question_particles_written_apart_are_not_content():
    base = analyse("Kasko zorunlu mu?").content
    assert len(base) == 2
    for particle in ("mı", "mi", "mü", "miyim", "mısınız", "midir"):
        assert analyse(f"Kasko zorunlu {particle}?").content == base


def test_turkish_detection():
    assert is_turkish("Kasko zorunlu mu?") and is_turkish("Şehir içi hız")
    assert not is_turkish("Is insurance compulsory?")


@pytest.mark.parametrize(("negative", "positive"), [
    ("Kasko zorunlu değil mi?", "Kasko zorunlu mu?"),
    ("Emniyet şeridinde durmamalı mıyım?", "Emniyet şeridinde durmalı mıyım?"),
    ("Telefonla konuşamaz mıyım?", "Telefonla konuşabilir miyim?"),
    ("Sigorta yok mu?", "Sigorta var mı?"),
    ("Kartım neden çalışmıyor?", "Kartım neden çalışıyor?"),
    ("Ehliyet almadan araba kullanabilir miyim?", "Ehliyet alıp araba kullanabilir miyim?"),
])
def test_turkish_negation(negative, positive):
    assert analyse(negative).negated and not analyse(positive).negated
    assert _features(negative, positive)["neg_mismatch"] == 1.0


@pytest.mark.parametrize(("a", "b"), [
    ("Otoparka giriş ücreti ne kadar?", "Otoparktan çıkış ücreti ne kadar?"),
    ("Otoyolda en az kaç km/s ile gidilir?", "Otoyolda en fazla kaç km/s ile gidilir?"),
    ("Azami hız kaç?", "Asgari hız kaç?"),
    ("Kavşakta sollama yasak mı?", "Kavşakta sollama serbest mi?"),
    ("What is the minimum speed on the motorway?", "What is the maximum speed on the motorway?"),
    ("Aboneliği nasıl başlatırım?", "Aboneliği nasıl iptal ederim?"),
    ("How do I renew my parking permit?", "How do I cancel my parking permit?"),
])
def test_opposites(a, b):
    assert _features(a, b)["opposite"] == 1.0
    assert _features(a, a)["opposite"] == 0.0


@pytest.mark.parametrize(("a", "b"), [
    ("Kamyonlar otoyolda kaç km/s gidebilir?", "Otobüsler otoyolda kaç km/s gidebilir?"),
    ("Traktörle şehir içinde kaç km/s gidebilirim?", "Otomobille şehir içinde kaç km/s gidebilirim?"),
    ("Minibüs ehliyeti kaç yaşında alınır?", "Motosiklet ehliyeti kaç yaşında alınır?"),
    ("Şehir içinde hız sınırı nedir?", "Şehirlerarası yolda hız sınırı nedir?"),
    ("Köy yolunda hız sınırı nedir?", "Otoyolda hız sınırı nedir?"),
    ("Kırmızı ışık ihlalinin cezası nedir?", "Kırmızı ışık ihlalinin ceza puanı nedir?"),
    ("B sınıfı ehliyet için yaş sınırı kaç?", "C sınıfı ehliyet için yaş sınırı kaç?"),
    ("At what age can I get a class B licence?", "At what age can I get a C licence?"),
])
def test_same_kind_swaps_are_seen(a, b):
    assert _features(a, b)["kind_mismatch"] >= 1.0


@pytest.mark.parametrize(("a", "b"), [
    ("Arabayla şehir içinde hız sınırı ne?", "Otomobille şehir içinde hız sınırı nedir?"),
    ("Yerleşim yeri içinde hız sınırı ne?", "Şehir içinde hız sınırı ne?"),
])
def test_synonyms_of_one_kind_are_not_a_swap(a, b):
    f = _features(a, b)
    assert f["kind_mismatch"] == 0.0 and f["q_only_n"] == 0.0 and f["c_only_n"] == 0.0


def test_inflected_forms_of_one_place_are_not_a_swap():
    f = _features("Otoyolda hız sınırı kaç?", "Otoyol hız sınırı kaç?")
    assert f["kind_mismatch"] == 0.0 and f["kind_one_side"] == 0.0


@pytest.mark.parametrize(("a", "b"), [
    ("Bölünmüş yolda otomobil için en düşük hız kaç?", "Bölünmüş yolda otomobil için hız sınırı kaç?"),
    ("What is the minimum speed on the motorway?", "What is the motorway speed limit?"),
    ("Otoyolda asgari hız ne?", "otoyolda hiz siniri ne"),  # typed without Turkish letters
    ("Alkol sınırı kaç promil?", "En az kaç promil alkolle ceza yazılır?"),
])
def test_a_limit_naming_no_end_is_the_maximum(a, b):
    assert _features(a, b)["opposite"] == 1.0


@pytest.mark.parametrize(("a", "b"), [
    ("Otoyolda azami hız kaç?", "Otoyolda hız sınırı kaç?"),
    ("What is the maximum speed on the motorway?", "What is the motorway speed limit?"),
    ("Hız sınırının alt sınırı var mı?", "Asgari hız var mı?"),  # the lower end named: no maximum implied
    ("Ehliyet için yaş sınırı kaç?", "Ehliyet için en az kaç yaşında olmalıyım?"),  # age limits are minima
])
def test_a_limit_that_agrees_is_no_opposite(a, b):
    assert _features(a, b)["opposite"] == 0.0


def test_opposite_phrases_are_read_without_turkish_letters():
    assert "en düşük" in analyse("otoyolda en dusuk hiz kac").phrases


@pytest.mark.parametrize(("text", "numbers"), [
    ("Can I take two bags?", {"2"}),
    ("Is the late fee due in the second month?", {"2"}),
    ("Is the 5th month free?", {"5"}),
    ("Beşinci ayda ceza var mı?", {"5"}),
    ("5inci ayda ceza var mı?", {"5"}),
    ("On gün içinde itiraz edebilir miyim?", {"10"}),
    ("Bin lira ceza mı?", {"1000"}),
    ("Is the shop on Main Street open?", set()),  # "on" is a number in Turkish text only
    ("İkinci el araç alırken nelere bakmalıyım?", set()),  # ikinci el: used, not second
    ("Is a second-hand car cheaper?", set()),
])
def test_number_words_and_ordinals_name_their_value(text, numbers):
    assert set(analyse(text).numbers) == numbers


def test_a_number_word_and_its_digits_agree_and_ordinals_differ():
    assert _features("Can I take two bags?", "Can I take 2 bags?")["num_mismatch"] == 0.0
    assert _features("Is the fee due in the second month?", "Is the fee due in the fifth month?")["num_mismatch"] == 1.0
    assert _features("İkinci ihlalde ceza ne?", "Üçüncü ihlalde ceza ne?")["num_mismatch"] == 1.0


@pytest.mark.parametrize(("a", "b"), [
    ("Emekliler için otopark ücretsiz mi?", "Otopark ücretsiz mi?"),
    ("Aday sürücüler otoyola çıkabilir mi?", "Sürücüler otoyola çıkabilir mi?"),
    ("Do retirees pay the bridge toll?", "Do people pay the bridge toll?"),
])
def test_new_scope_words(a, b):
    assert _features(a, b)["scope_one_side"] == 1.0


@pytest.mark.parametrize(("a", "b"), [
    ("Yolcuların emniyet kemeri takması zorunlu mu?", "Sürücünün emniyet kemeri takması zorunlu mu?"),
    ("Do pedestrians have priority here?", "Do cyclists have priority here?"),
    ("What is the fine for driving without insurance?", "What is the fine for driving without a licence?"),
    ("Sisli havada hız sınırı kaç?", "Karlı havada hız sınırı kaç?"),
])
def test_road_users_documents_and_weather_are_kinds(a, b):
    assert _features(a, b)["kind_mismatch"] == 1.0


@pytest.mark.parametrize(("a", "b"), [
    ("Ehliyetsiz araç kullanmak suç mu?", "Ehliyeti olmadan araç kullanmak suç mu?"),
    ("Do I need a class B licence?", "B sınıfı ehliyet gerekir mi?"),  # a licence class is a licence
    ("B ehliyet için yaş sınırı kaç?", "B sınıfı ehliyet için yaş sınırı kaç?"),
    ("Speed limit for a passenger car in town?", "Speed limit for a car in town?"),  # a car, not a road user
    ("Yağmurlu havada fren mesafesi?", "Yağmurda fren mesafesi?"),
])
def test_one_thing_named_two_ways_is_no_kind_difference(a, b):
    f = _features(a, b)
    assert f["kind_mismatch"] == 0.0 and f["kind_one_side"] == 0.0


def test_the_english_article_a_is_no_licence_class():
    assert "licence_class" not in analyse("Can I drive without a licence?").kinds
    assert analyse("Do I need an A licence?").kinds["licence_class"] == frozenset({"sinif_a"})
    assert analyse("a sınıfı ehliyet").kinds["licence_class"] == frozenset({"sinif_a"})  # Turkish: a letter


@pytest.mark.parametrize(("a", "b"), [
    ("Can I pay a parking fine online?", "Can I appeal a parking fine online?"),
    ("Kış lastiği takmak zorunlu mu?", "Kış lastiği takmak serbest mi?"),
    ("Trafik cezasını kaç gün içinde ödersem indirim olur?", "Trafik cezasına kaç gün içinde itiraz edebilirim?"),
])
def test_paying_vs_contesting_and_allowed_vs_required_are_opposites(a, b):
    assert _features(a, b)["opposite"] == 1.0


@pytest.mark.parametrize(("text", "phrase"), [
    ("Trafik cezası indirimli ödenir mi?", "indir"),  # indirim: a discount, not "download"
    ("Kış lastiği zorunlu mu?", "last"),  # lastik: a tyre
])
def test_words_that_only_begin_like_an_opposite_are_not_it(text, phrase):
    assert phrase not in analyse(text).phrases
    assert "indir" in analyse("Dosyayı nasıl indiririm?").phrases and "last" in analyse("the last day").phrases


@pytest.mark.parametrize(("a", "b"), [
    ("What is the monthly fee?", "What is the annual fee?"),
    ("I forgot my password", "I forgot my username"),
    ("Şifremi unuttum", "Kullanıcı adımı unuttum"),
])
def test_periods_and_credentials_are_kinds(a, b):
    assert _features(a, b)["kind_mismatch"] == 1.0


def test_turkish_durations_are_no_period():
    # "bir günlük izin" is a day's leave, not a daily one
    assert "period" not in analyse("Bir günlük izin alabilir miyim?").kinds
    f = _features("What is the annual fee?", "What is the yearly fee?")
    assert f["kind_mismatch"] == 0.0 and f["q_only_n"] == 0.0


@pytest.mark.parametrize(("a", "b"), [
    ("Can I postpone my appointment?", "Can I cancel my appointment?"),
    ("Randevumu nasıl ertelerim?", "Randevumu nasıl iptal ederim?"),
    ("How do I freeze my account?", "How do I close my account?"),
])
def test_moving_vs_cancelling_and_freezing_vs_closing_are_opposites(a, b):
    assert _features(a, b)["opposite"] == 1.0


def test_one_question_analysis_is_its_own_module_and_pairs_still_exports_it():
    # pairs.py compares two questions; analysis.py breaks one down. Callers that imported the
    # analysis names from pairs (verify, training, these tests) must get the very same objects.
    from semroute.hits import analysis, pairs

    for name in analysis.__all__:
        assert getattr(pairs, name) is getattr(analysis, name)
    assert set(analysis.__all__) <= set(pairs.__all__)
    a = analysis.analyse("Otoyolda B sınıfı ehliyetle en fazla kaç km/s?")
    assert a.turkish and "sınıf_b" in a.words and "otoyol" in a.content
