"""The static rows keep the live data's quirks: the pipeline must survive each of them."""

from totes.totesys import reference_data as ref


def test_departments_keep_the_leds_typo_and_have_managers():
    assert len(ref.DEPARTMENTS) == 8
    assert ref.DEPARTMENTS[3][:2] == ("Dispatch", "Leds")
    assert all(manager for _, _, manager in ref.DEPARTMENTS)


def test_nobody_works_in_sales_and_someone_has_an_apostrophe():
    assert len(ref.STAFF) == 20
    assert all(department != 1 for _, _, department in ref.STAFF)
    assert any("'" in last for _, last, _ in ref.STAFF)


def test_addresses_have_the_live_null_pattern_and_awkward_characters():
    assert len(ref.ADDRESSES) == 30
    assert sum(a[1] is None for a in ref.ADDRESSES) == 20
    assert sum(a[2] is None for a in ref.ADDRESSES) == 14
    assert "Democratic People's Republic of Korea" in {a[5] for a in ref.ADDRESSES}


def test_counterparties_share_fourteen_legal_addresses_and_have_awkward_names():
    assert len(ref.COUNTERPARTIES) == 20
    assert len({c[1] for c in ref.COUNTERPARTIES}) == 14
    assert all(1 <= c[1] <= len(ref.ADDRESSES) for c in ref.COUNTERPARTIES)
    names = [c[0] for c in ref.COUNTERPARTIES]
    assert any("," in n for n in names) and any(" - " in n for n in names)
    assert any("'" in c[3] for c in ref.COUNTERPARTIES)


def test_design_vocabulary():
    assert len(ref.DESIGN_NAMES) == 12
    assert len(set(ref.FILE_LOCATIONS)) == 60
