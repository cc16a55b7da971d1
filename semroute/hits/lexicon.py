"""Small English and Turkish word lists the pair features use to spot what differs.

These are constants, not state: stopwords (words that never change what a question asks),
negation markers, opposite actions (enable/disable, aç/kapat) and "same kind" sets (places,
days, months, currencies, ...) whose members cannot stand in for each other. They describe
*kinds* of difference; the trained pair model decides how much each kind matters. This module
is not a gazetteer of everything: unknown entities are caught by the proper-noun and rare-word
features in ``semroute.pairs`` instead.
"""

from __future__ import annotations

__all__ = ["COMPOUNDS", "STOPWORDS", "NEGATIONS", "OPPOSITES", "KINDS", "SCOPE_WORDS", "SYNONYMS", "NUMBER_WORDS",
           "NUMBER_VALUES", "TURKISH_NUMBER_VALUES", "NOT_A_NUMBER_BEFORE", "NOT_OPPOSITES", "MAXIMUM", "LIMITS_MEANING_MAXIMUM", "LEXICON_VERSION"]

LEXICON_VERSION = "4"

STOPWORDS = frozenset(
    """
    a an the is are was were be been being am do does did doing have has had having i me my mine we our
    you your yours he him his she her it its they them their this that these those there here what which
    who whom whose when where why how can could would should will shall may might must to of in on at by
    for with about from into onto as and or but if so than then too very just also please tell know want
    need like get got any some much many more most s t ll ve re d m o y let lets us am im id ive its
    whats hows wheres whats thats theres does get into out up down over under again further once
    ne nedir neler nasıl neden niçin niye hangi hangisi kim kime kimin nerede nereye nereden mi mı mu mü
    bir bu şu o ve veya ile için gibi kadar ben sen biz siz onlar benim senin bizim sizin onun de da ki
    ise acaba lütfen bana sana mısın misin musun müsün midir mıdır mudur müdür dır dir dur dür var
    olan olarak ama fakat çok daha en şey şeyi miyim mıyım muyum müyüm miyiz mıyız muyuz müyüz misiniz
    mısınız musunuz müsünüz yani peki hani şimdi içinde içi içindeki dışında
    """.split()
)

# Words (or word endings, see pairs._negated) that flip what a question asks.
NEGATIONS = frozenset(
    """
    not no never without cannot cant dont doesnt didnt isnt arent wasnt werent wont wouldnt shouldnt
    couldnt havent hasnt hadnt nor none nothing nobody neither
    değil yok olmadan hiç hiçbir asla
    """.split()
)

# Synonyms of switching something on and off: every "on" word is the opposite of every "off" word
# ("turn on" vs "disable" is as much a near miss as "enable" vs "disable").
_SWITCH_ON = ("enable", "activate", "turn on", "switch on")
_SWITCH_OFF = ("disable", "deactivate", "turn off", "switch off")

# Pairs of opposite actions or states; a question with one cannot be answered by one with the other.
OPPOSITES = tuple((on, off) for on in _SWITCH_ON for off in _SWITCH_OFF) + (
    ("open", "close"), ("start", "stop"), ("add", "remove"), ("add", "delete"),
    ("lock", "unlock"), ("block", "unblock"), ("freeze", "unfreeze"), ("increase", "decrease"),
    ("raise", "lower"), ("buy", "sell"), ("deposit", "withdraw"), ("send", "receive"), ("import", "export"),
    ("upload", "download"), ("subscribe", "unsubscribe"), ("login", "logout"), ("log in", "log out"),
    ("sign in", "sign out"), ("connect", "disconnect"), ("install", "uninstall"), ("allow", "deny"),
    ("accept", "reject"), ("approve", "decline"), ("include", "exclude"), ("encrypt", "decrypt"),
    ("maximum", "minimum"), ("max", "min"), ("before", "after"), ("first", "last"), ("highest", "lowest"),
    ("cheapest", "most expensive"), ("fastest", "slowest"), ("hot", "cold"), ("early", "late"),
    ("arrival", "departure"), ("arrive", "depart"), ("inbound", "outbound"), ("incoming", "outgoing"),
    ("credit", "debit"), ("public", "private"), ("mute", "unmute"), ("hide", "show"), ("join", "leave"),
    ("charge", "refund"), ("hire", "fire"), ("pass", "fail"), ("win", "lose"),
    ("aç", "kapat"), ("açmak", "kapatmak"), ("etkinleştir", "devre dışı"), ("başlat", "durdur"),
    ("ekle", "sil"), ("ekle", "kaldır"), ("kilitle", "kilidini aç"), ("artır", "azalt"), ("yükselt", "düşür"),
    ("al", "sat"), ("satın al", "sat"), ("yatır", "çek"), ("gönder", "al"), ("yükle", "indir"),
    ("giriş", "çıkış"), ("bağlan", "bağlantıyı kes"), ("kabul", "ret"), ("izin ver", "engelle"),
    ("en yüksek", "en düşük"), ("önce", "sonra"), ("ilk", "son"), ("sıcak", "soğuk"), ("erken", "geç"),
    ("varış", "kalkış"), ("gelen", "giden"), ("kredi", "banka"), ("aç", "kapa"), ("sessiz", "sesli"),
    # minimum vs maximum, front vs rear, left vs right, high vs low beam (traffic questions turn on them)
    ("en az", "en fazla"), ("en az", "en çok"), ("asgari", "azami"), ("minimum", "maksimum"), ("alt sınır", "üst sınır"),
    ("at least", "at most"), ("minimum", "maximum"), ("lowest", "highest"), ("ön", "arka"), ("front", "rear"),
    ("sağ", "sol"), ("sağdan", "soldan"), ("left", "right"), ("uzun far", "kısa far"), ("high beam", "low beam"),
    ("gece", "gündüz"), ("night", "day"), ("gir", "çık"), ("girmek", "çıkmak"), ("enter", "exit"), ("entry", "exit"),
    ("yaya", "sürücü"), ("pedestrian", "driver"), ("özel", "ticari"), ("private", "commercial"), ("hususi", "ticari"),
    ("erken ödeme", "geç ödeme"), ("yasak", "serbest"), ("forbidden", "allowed"), ("prohibited", "allowed"), ("pay early", "pay late"), ("ver", "al"), ("vermek", "almak"),
    # starting something vs cancelling it (a subscription, a booking, a licence application)
    ("start", "cancel"), ("begin", "cancel"), ("subscribe", "cancel"), ("activate", "cancel"), ("renew", "cancel"),
    ("book", "cancel"), ("başlat", "iptal"), ("başla", "iptal"), ("abone ol", "iptal"), ("yenile", "iptal"),
    ("etkinleştir", "iptal"), ("aktif", "pasif"), ("aç", "iptal"),
    # paying a fine vs contesting it; allowed vs required
    ("pay", "appeal"), ("pay", "contest"), ("öde", "itiraz"), ("ödeme", "itiraz"),
    ("allowed", "mandatory"), ("optional", "mandatory"), ("serbest", "zorunlu"), ("isteğe bağlı", "zorunlu"),
    # cancelling vs moving a booking; closing vs freezing an account
    ("cancel", "postpone"), ("cancel", "reschedule"), ("iptal", "ertele"), ("close", "freeze"), ("kapat", "dondur"),
)

# Stems that begin with an opposite's word but are another word (folded, as stems are): indirim is
# a discount, not indir (download); lastik / lastiği a tyre, not last (nor is "lasting").
NOT_OPPOSITES = ("indirim", "lasti")

# The upper end of a range. A question about a limit that names neither end asks about this one
# ("speed limit" is the highest allowed speed), so "en düşük hız" vs "hız sınırı" is a near miss
# like "en düşük" vs "en yüksek" (``LIMITS_MEANING_MAXIMUM``). Every member is in ``OPPOSITES``.
MAXIMUM = ("maximum", "max", "highest", "at most", "en yüksek", "en fazla", "en çok", "azami", "maksimum", "üst sınır")

# Limits that are maxima when a question names no end (read folded, no diacritics, at a word start;
# Turkish words may carry suffixes: "hız sınırında"). Age limits are left out: a driving age limit
# is a minimum.
LIMITS_MEANING_MAXIMUM = (
    "speed limit", "hiz sinir", "hiz limit", "alcohol limit", "alkol sinir", "alkol limit", "promil sinir",
    "promil limit", "weight limit", "load limit", "agirlik sinir", "yuk sinir",
)

# Scope modifiers: adding one narrows who or what the question is about (drivers vs professional drivers).
SCOPE_WORDS = frozenset(
    """
    professional commercial international domestic foreign local business personal corporate student students
    senior seniors child children kid kids adult adults minor minors teen teenagers elderly pregnant
    disabled veteran veterans new used old premium free paid virtual physical joint single married
    online offline mobile monthly annual yearly daily weekly hourly temporary permanent part full
    retired retiree retirees pensioner pensioners military soldier soldiers novice beginner beginners
    learner learners probationary
    ticari profesyonel uluslararası yurtiçi yurtdışı yabancı yerel kurumsal bireysel öğrenci çocuk
    çocuklar yetişkin yaşlı hamile engelli yeni eski ücretsiz ücretli sanal fiziksel ortak aylık yıllık
    günlük haftalık geçici kalıcı emekli emekliler asker askeri gazi aday acemi stajyer
    """.split()
)

# Number words and ordinals with the value they name, so "two bags" and "2 bags" agree and "the
# second month" and "the fifth month" differ as numbers do. "first" and "ilk" are not numbers here
# ("what should I do first", "ilk olarak": mostly adverbs) but stay the opposites of "last" / "son";
# half, double and the like name themselves.
_CARDINALS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
).split()
_TENS = {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_ORDINALS = (
    "_ _ second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
    "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"
).split()
_TR_CARDINALS = {"sıfır": 0, "iki": 2, "üç": 3, "dört": 4, "beş": 5, "altı": 6, "yedi": 7, "sekiz": 8, "dokuz": 9,
                 "yirmi": 20, "otuz": 30, "kırk": 40, "elli": 50, "altmış": 60, "yetmiş": 70, "seksen": 80,
                 "doksan": 90, "yüz": 100}
_TR_ORDINALS = {"birinci": 1, "ikinci": 2, "üçüncü": 3, "dördüncü": 4, "beşinci": 5, "altıncı": 6, "yedinci": 7,
                "sekizinci": 8, "dokuzuncu": 9, "onuncu": 10, "yirminci": 20, "otuzuncu": 30}
NUMBER_VALUES: dict[str, str] = {
    **{w: str(i) for i, w in enumerate(_CARDINALS)},
    **{w: str(v) for w, v in _TENS.items()},
    **{w: str(i) for i, w in enumerate(_ORDINALS) if i >= 2},
    "thirtieth": "30", "fortieth": "40", "fiftieth": "50", "hundredth": "100",
    "hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000", "dozen": "12",
    "half": "0.5", "quarter": "0.25", "double": "double", "twice": "twice",
    **{w: str(v) for w, v in _TR_CARDINALS.items()}, **{w: str(v) for w, v in _TR_ORDINALS.items()},
    "milyon": "1000000", "milyar": "1000000000", "yarım": "0.5", "çeyrek": "0.25",
}
# Ordinals that name no number before these words: "ikinci el", "second hand" (used, not second).
NOT_A_NUMBER_BEFORE: dict[str, tuple[str, ...]] = {"ikinci": ("el",), "second": ("hand",)}
# Turkish number words that are English words too ("on", "bin"): numbers only in Turkish text.
TURKISH_NUMBER_VALUES: dict[str, str] = {"on": "10", "bin": "1000"}
NUMBER_WORDS = frozenset(NUMBER_VALUES)

# Same-kind sets: two different members in the two questions mean they ask about different things.
KINDS: dict[str, frozenset[str]] = {
    "place": frozenset(
        """
        city highway motorway town village countryside downtown suburb airport station school hospital
        office home work beach mountain park street road island border
        şehir şehiriçi otoyol köy kasaba havalimanı havaalanı istasyon okul hastane ofis
        ev iş plaj dağ park sokak cadde yol ada
        şehirdışı şehirlerarası köyyolu bölünmüşyol yerleşimyeri otoban tünel köprü otopark intercity
        settlement tunnel bridge
        """.split()
    ),
    "city": frozenset(
        """
        istanbul ankara izmir bursa antalya adana konya trabzon eskişehir gaziantep kayseri mersin samsun
        diyarbakır london paris berlin madrid rome milan vienna amsterdam brussels dublin lisbon prague
        warsaw budapest athens moscow tokyo osaka beijing shanghai delhi mumbai dubai cairo sydney
        melbourne toronto vancouver montreal chicago boston seattle denver miami dallas houston atlanta
        phoenix york angeles francisco washington
        """.split()
    ),
    "country": frozenset(
        """
        turkey türkiye germany almanya france fransa italy italya spain ispanya england ingiltere uk britain
        usa america amerika canada kanada mexico japan japonya china çin india hindistan russia rusya
        brazil australia greece yunanistan netherlands hollanda belgium sweden norway denmark finland
        poland austria switzerland portugal ireland egypt israel iran iraq syria
        """.split()
    ),
    "currency": frozenset(
        """
        dollar dollars usd euro euros eur pound pounds gbp yen jpy lira liras try franc francs chf rupee
        yuan ruble bitcoin dolar lira sterlin avro
        """.split()
    ),
    "day": frozenset(
        """
        monday tuesday wednesday thursday friday saturday sunday weekday weekend today tomorrow yesterday
        tonight morning afternoon evening night pazartesi salı çarşamba perşembe cuma cumartesi pazar
        bugün yarın dün sabah öğle akşam gece haftasonu
        """.split()
    ),
    "month": frozenset(
        """
        january february march april june july august september october november december
        ocak şubat mart nisan mayıs haziran temmuz ağustos eylül ekim kasım aralık
        spring summer autumn fall winter ilkbahar yaz sonbahar kış
        """.split()
    ),
    "color": frozenset(
        """
        red blue green yellow black white orange purple pink brown grey gray silver gold
        kırmızı mavi yeşil sarı siyah beyaz turuncu mor pembe kahverengi gri gümüş altın
        """.split()
    ),
    "language": frozenset(
        """
        english turkish german french spanish italian chinese japanese russian arabic portuguese dutch
        korean greek hindi ingilizce türkçe almanca fransızca ispanyolca italyanca çince japonca rusça
        arapça
        """.split()
    ),
    "vehicle": frozenset(
        """
        car truck bus motorcycle bike bicycle train plane taxi van boat ship scooter tractor moped minibus lorry
        automobile coach motorbike
        araba otomobil kamyon kamyonet otobüs motosiklet bisiklet tren uçak taksi minibüs midibüs tekne gemi
        traktör çekici tır dolmuş panelvan motorlubisiklet
        """.split()
    ),
    "payment": frozenset(
        """
        card cash cheque check transfer wire paypal apple google visa mastercard amex
        kart nakit çek havale eft
        """.split()
    ),
    # Who a traffic rule is for: a rule for passengers does not answer one for drivers.
    "road_user": frozenset(
        """
        driver drivers passenger passengers pedestrian pedestrians cyclist cyclists motorcyclist motorcyclists
        sürücü yolcu yaya bisikletli motosikletli
        """.split()
    ),
    # The papers a driver or a vehicle needs: a question about one is not about another.
    "document": frozenset(
        """
        licence license licences licenses insurance registration inspection passport
        ehliyet sigorta ruhsat muayene pasaport
        """.split()
    ),
    # How often something is paid or counted: a monthly fee is not the annual one. English only:
    # Turkish "günlük", "aylık" also say how long ("bir günlük izin": a day's leave).
    "period": frozenset("hourly daily weekly monthly quarterly yearly annual annually".split()),
    # What a user signs in with: a forgotten password is not a forgotten username.
    "credential": frozenset(
        """
        password passwords passcode username usernames pin
        şifre parola kullanıcıadı
        """.split()
    ),
    # Road conditions: a rule in fog or snow may differ from the rule on a dry road.
    "weather": frozenset(
        """
        rain rainy snow snowy fog foggy ice icy wet storm
        yağmur yağmurlu kar karlı sis sisli buz buzlu ıslak fırtına
        """.split()
    ),
    "person": frozenset(
        """
        mother father mom dad son daughter brother sister wife husband friend boss teacher doctor
        anne baba oğul kız kardeş abla ağabey eş karı koca arkadaş patron öğretmen doktor
        """.split()
    ),
    "device": frozenset(
        """
        phone laptop computer tablet printer router tv television iphone android windows mac linux
        telefon bilgisayar tablet yazıcı modem televizyon
        """.split()
    ),
    # What a rule question asks about: the fine, the points, the fee, the deadline or the procedure.
    "matter": frozenset(
        """
        fine fines fee fees deadline deadlines procedure points
        ceza cezapuanı ücret harç süre nezaman songün kaçgün prosedür işlem başvuru
        """.split()
    ),
    # Licence classes (merged from "B sınıfı", "class B", "A2 ehliyet" by ``COMPOUNDS``).
    "licence_class": frozenset("sınıf_a sınıf_a1 sınıf_a2 sınıf_b sınıf_be sınıf_c sınıf_c1 sınıf_ce sınıf_d sınıf_d1 "
                               "sınıf_de sınıf_f sınıf_g sınıf_m".split()),
}

# Same-kind words that name the same thing (a query with one and a cached question with the other
# ask the same): mapped to one member before kinds are compared.
SYNONYMS: dict[str, str] = {
    "araba": "otomobil", "automobile": "car", "lorry": "truck", "motorbike": "motorcycle", "otoban": "otoyol",
    "yerleşimyeri": "şehiriçi", "şehirdışı": "şehirlerarası", "fines": "fine", "fees": "fee",
    "deadlines": "deadline", "songün": "nezaman", "kaçgün": "nezaman", "prosedür": "işlem",
    # The kinds added in lexicon v4 name one thing in both languages. The Turkish word is the one
    # kept: its inflected forms (ehliyetsiz, muayenesi) then still share its stem.
    **{w: "sürücü" for w in ("driver", "drivers")}, **{w: "yolcu" for w in ("passenger", "passengers")},
    **{w: "yaya" for w in ("pedestrian", "pedestrians")}, **{w: "bisikletli" for w in ("cyclist", "cyclists")},
    **{w: "motosikletli" for w in ("motorcyclist", "motorcyclists")},
    **{w: "ehliyet" for w in ("licence", "license", "licences", "licenses")}, "insurance": "sigorta",
    "registration": "ruhsat", "inspection": "muayene", "passport": "pasaport",
    **{w: "yağmur" for w in ("rain", "rainy", "yağmurlu")}, **{w: "kar" for w in ("snow", "snowy", "karlı")},
    **{w: "sis" for w in ("fog", "foggy", "sisli")}, **{w: "buz" for w in ("ice", "icy", "buzlu")}, "wet": "ıslak",
    "storm": "fırtına",
    "annually": "annual", "yearly": "annual", "parola": "şifre", "password": "şifre", "passwords": "şifre",
    "passcode": "şifre", "username": "kullanıcıadı", "usernames": "kullanıcıadı",
}

# Two-word phrases read as one word (Turkish writes many concepts apart: "şehir içi", "ceza puanı").
# Key: (first word, how the second word starts); value: the merged word. The second word may carry
# suffixes ("şehir içinde", "ceza puanları").
COMPOUNDS: dict[tuple[str, str], str] = {
    ("şehir", "iç"): "şehiriçi", ("şehir", "dış"): "şehirdışı", ("köy", "yol"): "köyyolu",
    ("bölünmüş", "yol"): "bölünmüşyol", ("yerleşim", "yer"): "yerleşimyeri", ("ceza", "puan"): "cezapuanı",
    ("ne", "zaman"): "nezaman", ("son", "gün"): "songün", ("kaç", "gün"): "kaçgün",
    ("motorlu", "bisiklet"): "motorlubisiklet", ("para", "ceza"): "ceza",
    ("passenger", "car"): "car", ("passenger", "vehicle"): "car",  # a kind of car, not a road user
    ("kullanıcı", "ad"): "kullanıcıadı", ("user", "name"): "username",
    **{(c, w): f"sınıf_{c}" for c in ("a", "a1", "a2", "b", "be", "c", "c1", "ce", "d", "d1", "de", "f", "g", "m")
       for w in ("sınıf", "ehliyet", "licen", "class", "belge")},
    **{(w, c): f"sınıf_{c}" for c in ("a", "a1", "a2", "b", "be", "c", "c1", "ce", "d", "d1", "de", "f", "g", "m")
       for w in ("class",)},
}
