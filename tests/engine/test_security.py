"""Security: no code run from a checkpoint, no path out of the project, no patient data leaked.

- Weights load only from safetensors: a pickle (or torch.save zip) whose unpickling would write a
  marker file is refused by name, and the marker never appears.
- Paths stored in a project (masks, models, embeddings) resolve inside the project folder: a
  tampered row ('../../etc/passwd', an absolute path, a symlink out) gives a ProjectError.
- Exports are de-identified by default: a DICOM series carrying a distinctive patient name, ID,
  birth date, accession number and institution goes through init, labeling, mask import, status
  and csv/nifti export, and none of those strings (nor the DICOM UIDs, in exported files) appear
  in any exported byte, the audit log, the status JSON, the command output or the DEBUG logs.
  With keep_names=True the source names appear, as the user asked.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import pickle
import re
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medlabeler.cli import main
from medlabeler.engine.errors import InputError, ProjectError
from medlabeler.engine.io import read_image, scan_sources
from medlabeler.engine.store import Project
from tests.engine import bad_inputs as corpus
from tests.engine.io_fixtures import write_dicom_series, write_nifti

MARKER = "CODE_RAN_ON_LOAD"


class WritesMarker:
    """Unpickling this object writes a file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _pickles(folder: Path) -> dict[str, Path]:
    """Checkpoints that run code when unpickled, in every common container."""
    import torch

    marker = folder / MARKER
    made: dict[str, Path] = {}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        path = folder / f"model_p{protocol}.safetensors"  # the name does not make it safe
        path.write_bytes(pickle.dumps({"weight": WritesMarker(marker)}, protocol=protocol))
        made[f"pickle protocol {protocol}"] = path
    path = folder / "model_torch.pt"
    torch.save({"weight": torch.zeros(2), "evil": WritesMarker(marker)}, path)
    made["torch.save zip"] = path
    path = folder / "model_legacy.pt"
    torch.save({"evil": WritesMarker(marker)}, path, _use_new_zipfile_serialization=False)
    made["torch.save legacy"] = path
    # safetensors-looking first bytes (header length + '{') followed by a pickle
    body = pickle.dumps(WritesMarker(marker), protocol=2)
    path = folder / "model_disguised.safetensors"
    path.write_bytes(len(body).to_bytes(8, "little") + b"{" + body)
    made["pickle behind a safetensors-like prefix"] = path
    return made


def test_pickled_weights_are_refused_and_run_no_code(tmp_path):
    from medlabeler.engine.training.checkpoint import load_weights

    for kind, path in _pickles(tmp_path).items():
        with pytest.raises(InputError) as info:
            load_weights(path)
        message = str(info.value)
        assert path.name in message, kind
        assert re.search(r"pickle|not a safetensors|damaged safetensors", message), (kind, message)
        assert not (tmp_path / MARKER).exists(), f"{kind}: loading ran code"
    with pytest.raises(InputError, match="pickle"):
        load_weights(tmp_path / "model_p4.safetensors")
    # control: the payload is live, so the absence of the marker above means something
    pickle.loads((tmp_path / "model_p4.safetensors").read_bytes())
    assert (tmp_path / MARKER).read_text() == "pwned"


def test_a_pickled_model_added_to_a_project_is_refused_when_loaded(tmp_path):
    from medlabeler.engine.workflows.model_versions import load_model

    weights = _pickles(tmp_path)["torch.save zip"]
    corpus.write_png(tmp_path / "images" / "a.png", corpus.grey_pixels())
    with Project.create(tmp_path / "project", task="segmentation", names=["x"]) as project:
        project.add_model(method="supervised", weights_file=weights, record={}, metrics={})
        with pytest.raises(InputError, match="pickle"):
            load_model(project)
    assert not (tmp_path / MARKER).exists()


def test_real_safetensors_weights_still_load(tmp_path):
    import torch

    from medlabeler.engine.training.checkpoint import load_weights, save_weights

    path = save_weights(tmp_path / "w.safetensors", {"a": torch.arange(4.0)}, {"method": "supervised"})
    state, record = load_weights(path)
    assert torch.equal(state["a"], torch.arange(4.0)) and record["method"] == "supervised"


def test_no_unpickling_call_anywhere_in_the_package():
    """A static guard: the only ways to run code from a data file stay out of the package."""
    root = Path(__file__).resolve().parents[2] / "medlabeler"
    forbidden = re.compile(r"torch\.load\(|pickle\.loads?\(|allow_pickle\s*=\s*True|weights_only\s*=\s*False"
                           r"|torch\.jit\.load\(|np\.load\([^)]*mmap_mode|joblib\.load\(|dill\.")
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if forbidden.search(code):
                offenders.append(f"{path.relative_to(root.parent)}:{number}: {line.strip()}")
    assert not offenders, offenders


# ----------------------------------------------------------------------------- paths


def _labeled_project(tmp_path: Path) -> Path:
    """A segmentation project with one mask label, one model version and stored embeddings."""
    import torch

    from medlabeler.engine.training.checkpoint import save_weights

    corpus.write_png(tmp_path / "images" / "a.png", corpus.grey_pixels())
    from medlabeler.engine.project.project_import import create_project

    project, _ = create_project(tmp_path / "project", tmp_path / "images", task="segmentation", names=["x"])
    with project:
        sample = project.samples()[0]
        project.save_label(sample.id, (corpus.grey_pixels() > 128).astype(np.uint8))
        weights = save_weights(tmp_path / "w.safetensors", {"a": torch.zeros(2)}, {"kind": "model"})
        version = project.add_model(method="supervised", weights_file=weights, record={}, metrics={}).version
        project.write_embeddings(version, [sample.id], np.ones((1, 4), np.float32))
    return tmp_path / "project"


def _tamper(root: Path, sql: str, value: str) -> None:
    with sqlite3.connect(root / "project.sqlite") as conn:
        conn.execute(sql, (value,))


ESCAPES = ["../../etc/passwd", "/etc/passwd", "masks/../../../etc/passwd", "masks/..\\..\\secret",
           "C:/Windows/win.ini", "masks/\x00x"]


@pytest.mark.parametrize("relpath", ESCAPES, ids=["dotdot", "absolute", "inner-dotdot", "backslash", "drive", "nul"])
def test_a_mask_path_out_of_the_project_is_refused(relpath, tmp_path, capsys):
    root = _labeled_project(tmp_path)
    _tamper(root, "UPDATE labels SET mask_relpath = ?", relpath)
    with Project.open(root, readonly=True) as project:
        sample = project.samples()[0]
        with pytest.raises(ProjectError) as info:
            project.load_label(sample.id)
        assert "project" in str(info.value) or "path" in str(info.value)
        with pytest.raises(ProjectError):
            project.labels()
        assert project.check_labels() and isinstance(project.check_labels()[0], ProjectError)
    # refused and named; the export goes on with the labels that read (here none) and says so
    assert main(["export", str(root), "--format", "nifti", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "left out of the export" in err
    assert "escapes the project folder" in err or "not a valid path" in err


@pytest.mark.parametrize("relpath", ESCAPES[:3], ids=["dotdot", "absolute", "inner-dotdot"])
def test_model_and_embedding_paths_out_of_the_project_are_refused(relpath, tmp_path, capsys):
    root = _labeled_project(tmp_path)
    _tamper(root, "UPDATE embeddings SET relpath = ?", relpath)
    with Project.open(root, readonly=True) as project:
        with pytest.raises(ProjectError, match="escapes|not a valid path"):
            project.embeddings(1)
    _tamper(root, "UPDATE models SET relpath = ?", relpath)
    with Project.open(root, readonly=True) as project:
        with pytest.raises(ProjectError, match="escapes|not a valid path"):
            project.models()
        with pytest.raises(ProjectError):
            project.active_model()
    assert main(["models", str(root)]) == 2
    assert "escapes" in capsys.readouterr().err


def test_a_symlink_out_of_the_project_is_refused(tmp_path):
    root = _labeled_project(tmp_path)
    secret = tmp_path / "secret.npz"
    secret.write_bytes(b"outside the project")
    with sqlite3.connect(root / "project.sqlite") as conn:
        (relpath,) = conn.execute("SELECT mask_relpath FROM labels").fetchone()
    mask = root / relpath
    mask.unlink()
    mask.symlink_to(secret)
    with Project.open(root, readonly=True) as project:
        with pytest.raises(ProjectError, match="escapes"):
            project.load_label(project.samples()[0].id)


# ----------------------------------------------------------------------------- de-identification

IDENTITY = {
    "PatientName": "DOE^JANE",
    "PatientID": "PID-12345",
    "PatientBirthDate": "19310417",
    "AccessionNumber": "ACC-98765",
    "InstitutionName": "ST ELSEWHERE HOSPITAL",
    "ReferringPhysicianName": "HOUSE^GREGORY",
}


def _identified_series(folder: Path) -> tuple[list[Path], dict[str, str]]:
    """A 6-slice CT series in neutral folder/file names whose headers name a person."""
    import pydicom

    paths = write_dicom_series(folder, corpus.volume_pixels((6, 16, 16)), spacing=(2.0, 1.0, 1.0),
                               patient_name=IDENTITY["PatientName"], patient_id=IDENTITY["PatientID"])
    uids = {}
    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword, value in IDENTITY.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
        uids = {"StudyInstanceUID": str(ds.StudyInstanceUID), "SeriesInstanceUID": str(ds.SeriesInstanceUID)}
    return paths, uids


def _forbidden_in(data: bytes, needles: list[str]) -> list[str]:
    texts = [data]
    if data[:2] == b"\x1f\x8b":
        texts.append(gzip.decompress(data))
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            texts.extend(archive.read(n) for n in archive.namelist())
    found = []
    for needle in needles:
        variants = {needle, needle.replace("^", " "), needle.lower(), needle.replace("^", " ").title()}
        for text in texts:
            if any(v.encode() in text or v.encode("utf-16-le") in text for v in variants):
                found.append(needle)
                break
    return found


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_the_whole_flow_leaks_no_patient_identifier(tmp_path, caplog, capsys, recwarn):
    caplog.set_level(logging.DEBUG)
    data = tmp_path / "study_01"
    paths, uids = _identified_series(data / "series_01")
    identity = list(IDENTITY.values())
    root = tmp_path / "project"
    outputs: list[str] = []

    def run(*argv: str) -> str:
        code = main(list(argv))
        out, err = capsys.readouterr()
        outputs.extend([out, err])
        assert code == 0, err
        return out

    run("init", str(root), "--images", str(data), "--task", "segmentation", "--labels", "lesion,organ")
    with Project.open(root) as project:
        samples = project.samples()
        assert len(samples) == 6
        for sample in samples[:3]:
            mask = np.zeros(sample.shape, np.uint8)
            mask[2:6, 3:9] = 1 + sample.slice_index % 2
            project.save_label(sample.id, mask, author="reader 1")
        outputs.extend(repr(s) for s in samples)
    write_nifti(tmp_path / "masks" / "series_01.nii.gz", np.ones((6, 16, 16), np.uint8), dtype=np.uint8)
    run("import-labels", str(root), str(tmp_path / "masks"))
    status = run("status", str(root), "--json")
    assert json.loads(status)["labeled"] == 6
    run("export", str(root), "--format", "csv", "--out", str(tmp_path / "export_csv"))
    run("export", str(root), "--format", "nifti", "--out", str(tmp_path / "export_nifti"))
    run("models", str(root), "--json")
    image = read_image(data / "series_01")
    infos, _ = scan_sources(data)
    assert image.identifiers["PatientName"] == IDENTITY["PatientName"]  # kept apart, not lost
    outputs += [repr(image), str(image), json.dumps(image.metadata, default=str), repr(infos)]

    exported = _files_under(tmp_path / "export_csv") + _files_under(tmp_path / "export_nifti")
    assert len(exported) >= 3
    for path in exported:
        leaked = _forbidden_in(path.read_bytes(), identity + list(uids.values()))
        assert not leaked, f"{path.name} holds {leaked}"
        assert "study_01" not in path.read_bytes().decode("latin-1") and "series_01" not in path.name
    with Project.open(root, readonly=True) as project:
        audit = json.dumps(project.audit_log())
    assert len(json.loads(audit)) >= 4
    for name, text in [("audit log", audit), ("status --json", status), ("command output", "\n".join(outputs)),
                       ("logs", caplog.text), ("warnings", "\n".join(str(w.message) for w in recwarn))]:
        assert not _forbidden_in(text.encode(), identity), f"{name} holds {_forbidden_in(text.encode(), identity)}"
    # the project folder itself (database, masks) carries no identifier either
    for path in _files_under(root):
        assert not _forbidden_in(path.read_bytes(), identity), f"{path.relative_to(root)} holds an identifier"


def test_exports_name_sources_only_when_asked(tmp_path, capsys):
    """Folder names often carry the patient: hidden by default, shown with keep_names."""
    from medlabeler.engine.project.export import export_project

    data = tmp_path / "DOE_JANE_PID-12345"
    write_nifti(data / "DOE_JANE_T1.nii.gz", corpus.volume_pixels())
    assert main(["init", str(tmp_path / "project"), "--images", str(data), "--task", "segmentation",
                 "--labels", "lesion"]) == 0
    assert "DOE_JANE" not in "".join(capsys.readouterr())
    with Project.open(tmp_path / "project") as project:
        for sample in project.samples()[:2]:
            project.save_label(sample.id, np.ones(sample.shape, np.uint8))
        hidden = export_project(project, tmp_path / "plain", fmt="nifti") + \
            export_project(project, tmp_path / "plain", fmt="csv")
        shown = export_project(project, tmp_path / "named", fmt="nifti", keep_names=True) + \
            export_project(project, tmp_path / "named", fmt="csv", keep_names=True)
        audit = json.dumps(project.audit_log())
    for path in hidden:
        assert "DOE_JANE" not in path.name and b"DOE_JANE" not in path.read_bytes()
    assert any("DOE_JANE_T1" in p.name for p in shown)
    assert b"DOE_JANE" in (tmp_path / "named" / "labels.csv").read_bytes()
    assert "DOE_JANE" not in audit and "PID-12345" not in audit


def test_image_and_error_texts_carry_no_identifier(tmp_path):
    paths, _ = _identified_series(tmp_path / "s")
    image = read_image(paths[0])
    for text in (repr(image), str(image), json.dumps(image.metadata, default=str)):
        assert not _forbidden_in(text.encode(), list(IDENTITY.values())), text
    # a refused series names the folder and the problem, not the patient
    import pydicom

    ds = pydicom.dcmread(paths[1])
    ds.ImagePositionPatient = [0, 0, 5.1]
    ds.save_as(paths[1])
    with pytest.raises(InputError) as info:
        read_image(tmp_path / "s")
    assert "uneven" in str(info.value) or "duplicate" in str(info.value)
    assert not _forbidden_in(str(info.value).encode(), list(IDENTITY.values()))
