"""ICD-10 -> CCSR CIR labels (docs/contract.md, ICD-10 to CCSR labels): the official quoted DXCCSR format, one-to-many
codes, the shared JSON, the paper's Table 2 preset and the difference between them, and the code-list text MIMIC
stores."""

import pytest

from eee_ray.ecgdata import labels as L
from eee_ray.errors import UserError

# Header and two rows in the exact layout of AHRQ's DXCCSR_v2024-1.csv (every field quoted twice: "'...'").
DXCCSR = """\
"'ICD-10-CM CODE'","'ICD-10-CM CODE DESCRIPTION'","'Default CCSR CATEGORY IP'","'Default CCSR CATEGORY DESCRIPTION IP'",\
"'Default CCSR CATEGORY OP'","'Default CCSR CATEGORY DESCRIPTION OP'","'CCSR CATEGORY 1'","'CCSR CATEGORY 1 DESCRIPTION'",\
"'CCSR CATEGORY 2'","'CCSR CATEGORY 2 DESCRIPTION'","'CCSR CATEGORY 3'","'CCSR CATEGORY 3 DESCRIPTION'",\
"'CCSR CATEGORY 4'","'CCSR CATEGORY 4 DESCRIPTION'","'CCSR CATEGORY 5'","'CCSR CATEGORY 5 DESCRIPTION'",\
"'CCSR CATEGORY 6'","'CCSR CATEGORY 6 DESCRIPTION'"
"'I110'","'Hypertensive heart disease with heart failure'","'CIR008'","'Hypertension with complications'",\
"'CIR008'","'Hypertension with complications'","'CIR008'","'Hypertension with complications'",\
"'CIR019'","'Heart failure'"," "," "," "," "," "," "," "," "
"'I5020'","'Unspecified systolic (congestive) heart failure'","'CIR019'","'Heart failure'","'CIR019'",\
"'Heart failure'","'CIR019'","'Heart failure'"," "," "," "," "," "," "," "," "," "," "
"'A000'","'Cholera'","'DIG001'","'Intestinal infection'","'DIG001'","'Intestinal infection'","'DIG001'",\
"'Intestinal infection'"," "," "," "," "," "," "," "," "," "," "
"'R99'","'Ill-defined and unknown cause of mortality'","'XXX111'","'Unacceptable'","'XXX000'","'Unacceptable'",\
"'SYM017'","'Other'"," "," "," "," "," "," "," "," "," "," "
"""


@pytest.fixture
def dxccsr(tmp_path):
    p = tmp_path / "DXCCSR_v2024-1.csv"
    p.write_text(DXCCSR)
    return p


def test_quoted_dxccsr_is_parsed_with_one_to_many_codes(dxccsr):
    m = L.read_dxccsr_csv(dxccsr)
    assert m.cir == {"I110": ("CIR008", "CIR019"), "I5020": ("CIR019",)}  # non-CIR and placeholders left out
    assert m.known_codes == {"I110", "I5020", "A000", "R99"}
    # a record gets every category of every code
    assert L.record_labels(m, ["I110", "A000"], "category") == {"CIR008", "CIR019"}
    assert L.record_labels(m, ["I110", "A000"], "code") == {"I110"}
    assert m.unknown(["I110", "Z9999"]) == ["Z9999"]


def test_official_mapping_prefers_a_dxccsr_file_beside_the_data(dxccsr):
    assert L.load_mapping("official", [dxccsr.parent]).source == "dxccsr:DXCCSR_v2024-1.csv"
    assert L.load_mapping(str(dxccsr)).cir["I110"] == ("CIR008", "CIR019")


def test_not_a_dxccsr_file_is_a_user_error(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="not a DXCCSR file"):
        L.read_dxccsr_csv(p)
    with pytest.raises(UserError, match="--mapping"):
        L.load_mapping(str(tmp_path / "missing.csv"))


def test_paper_table2_preset_differs_from_official_for_i5020(shared_data):
    paper = L.load_mapping("paper-table2")
    official = L.load_mapping("json")
    assert paper.cir["I5020"] == ("CIR022",)  # what the paper's Table 2 says
    assert official.cir["I5020"] == ("CIR019",)  # what AHRQ says (docs/contract.md, ICD-10 to CCSR labels)
    assert len(paper.cir) == sum(len(v) for v in L.PAPER_TABLE2.values())
    assert L.record_labels(paper, ["I480", "I4891", "E119"], "category") == {"CIR029"}
    assert len(official.cir) == 1752  # the shared JSON's CIR codes (data README)
    assert all(c.startswith("CIR") for cats in official.cir.values() for c in cats)


@pytest.mark.parametrize("text, codes", [
    ("['I10', 'E785', 'I50.20']", ["I10", "E785", "I5020"]),
    ("I10;e785", ["I10", "E785"]),
    ("[]", []),
    ("", []),
    (None, []),
])
def test_code_lists_in_their_usual_spellings(text, codes):
    assert L.parse_code_list(text) == codes


@pytest.mark.parametrize("text", ["['I10', ", "['hello world']", "{'a': 1}"])
def test_malformed_code_lists_raise_for_a_per_record_reason(text):
    with pytest.raises(ValueError):
        L.parse_code_list(text)


def test_unknown_label_level_is_a_user_error():
    with pytest.raises(UserError, match="label-level"):
        L.record_labels(L.paper_table2(), ["I509"], "chapter")
