"""DICOM-SEG out and in on a real series: the MNI152 brain MRI written as a DICOM MR series."""

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medlabeler.cli import main
from medlabeler.engine.project.dicom_seg import SEG_SOP_CLASS, segment_codes, source_series
from medlabeler.engine.errors import InputError
from medlabeler.engine.project.export import export_project
from medlabeler.engine.project.project_import import create_project, import_labels
from medlabeler.engine.store import Project

from .io_fixtures import mni_volume, write_dicom_series, write_nifti

hd = pytest.importorskip("highdicom")

PATIENT = ("Doe^Jane", "PAT-0001", "ACC123")
LABELS = "grey matter,white matter"
TINY = {"cap_threads": False, "image_size": 32, "features": [8, 16, 32], "batch_size": 4, "steps": 2}


def tissue_mask(volume: np.ndarray) -> np.ndarray:
    """0 background, 1 grey matter, 2 white matter: thresholds of the T1 intensity."""
    return ((volume > 60).astype(np.uint8) + (volume > 110)).astype(np.uint8)


@pytest.fixture(scope="module")
def brain(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    volume = mni_volume(8)  # (24, 30, 25)
    files = write_dicom_series(root / "mr", volume, spacing=(8.0, 8.0, 8.0), modality="MR", rescale=(1.0, 0.0))
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]  # slice order
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    return {"root": root, "series": root / "mr", "volume": volume, "mask": tissue_mask(volume), "uids": uids,
            "series_uid": str(header.SeriesInstanceUID), "study_uid": str(header.StudyInstanceUID)}


def labeled_slice_project(folder: Path, brain, slices=(5, 9, 12, 17)) -> Project:
    project, _ = create_project(folder, brain["series"], task="segmentation", names=LABELS.split(","))
    by_index = {s.slice_index: s for s in project.samples()}
    for k in slices:
        project.save_label(by_index[k].id, brain["mask"][k])
    return project


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_export_of_slice_labels_reads_back_equal_with_references(tmp_path, brain, capsys):
    slices = (5, 9, 12, 17)
    labeled_slice_project(tmp_path / "p", brain, slices).close()
    code, out, err = cli(capsys, "export", tmp_path / "p", "--format", "dicom-seg", "--out", tmp_path / "out")
    assert code == 0, err
    assert "patient and study" in out and "--deidentify" in out
    assert not any(identifier in out + err for identifier in PATIENT)
    files = sorted((tmp_path / "out").glob("*.dcm"))
    assert [f.name for f in files] == ["volume_0001_seg.dcm"]  # one SEG for the one series

    raw = pydicom.dcmread(files[0])
    assert raw.SOPClassUID == SEG_SOP_CLASS and raw.Modality == "SEG"
    assert raw.StudyInstanceUID == brain["study_uid"] and str(raw.PatientID) == "PAT-0001"
    assert raw.ReferencedSeriesSequence[0].SeriesInstanceUID == brain["series_uid"]
    referenced = {str(i.ReferencedSOPInstanceUID) for i in raw.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {brain["uids"][k] for k in slices}
    assert raw.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"

    seg = hd.seg.segread(files[0])
    assert [seg.get_segment_description(n).segment_label for n in (1, 2)] == LABELS.split(",")
    grey = seg.get_segment_description(1).segmented_property_type
    assert (grey.value, grey.scheme_designator) == ("389081007", "SCT")  # SNOMED CT grey matter
    assert hasattr(seg.SegmentSequence[0], "RecommendedDisplayCIELabValue")
    wanted = [brain["uids"][k] for k in slices]
    pixels = seg.get_pixels_by_source_instance(wanted, combine_segments=True, relabel=False)
    np.testing.assert_array_equal(pixels, brain["mask"][list(slices)])


def test_import_of_a_written_seg_gives_the_same_labels(tmp_path, brain, capsys):
    source = labeled_slice_project(tmp_path / "a", brain)
    export_project(source, tmp_path / "out", fmt="dicom-seg")
    expected = {s.slice_index: source.load_label(s.id) for s in source.samples(labeled=True)}
    source.close()
    main(["init", str(tmp_path / "b"), "--images", str(brain["series"]), "--task", "segmentation", "--labels", LABELS])
    capsys.readouterr()
    code, out, err = cli(capsys, "import-labels", tmp_path / "b", tmp_path / "out")
    assert code == 0 and f"imported {len(expected)} labels" in out, (out, err)
    with Project.open(tmp_path / "b", readonly=True) as target:
        got = {s.slice_index: target.load_label(s.id) for s in target.samples(labeled=True)}
        assert all(target.label(s.id).origin == "imported" for s in target.samples(labeled=True))
    assert sorted(got) == sorted(expected)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])


def test_a_slice_erased_in_another_tool_comes_back_as_background(tmp_path, brain, monkeypatch):
    """A trial: a radiologist cleared a slice in a SEG editor, which left its empty frame out (as
    highdicom and most tools do) while the SEG still references the image: the import skipped
    the slice and its old label stayed."""
    slices = (5, 9, 12)
    with labeled_slice_project(tmp_path / "a", brain, slices) as project:
        erased = next(s for s in project.samples() if s.slice_index == 9)
        project.save_label(erased.id, np.zeros_like(brain["mask"][9]))  # as the other tool left it
        segmentation = hd.seg.Segmentation
        monkeypatch.setattr(hd.seg, "Segmentation", lambda *a, **k: segmentation(*a, **{**k, "omit_empty_frames": True}))
        (seg_file,) = export_project(project, tmp_path / "edited", fmt="dicom-seg")
        monkeypatch.undo()
        raw = pydicom.dcmread(seg_file)
        assert int(raw.NumberOfFrames) == 2 * len(LABELS.split(",")) and len(
            raw.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 3  # the erased slice: no frame
        project.save_label(erased.id, brain["mask"][9])  # its label before the edit
        report = import_labels(project, tmp_path / "edited")
        assert report.errors == [] and (report.labeled, report.unchanged) == (1, 2)
        assert not project.load_label(erased.id).any() and project.label(erased.id).origin == "imported"
        assert report.warnings == []  # it was labeled: an edit, not news
        # a SEG of the whole series with two slices segmented (as Slicer and OHIF write them), into a
        # project where nobody labeled anything: every slice comes in, and the import says so
        for sample in project.samples():
            if sample.slice_index not in slices:
                project.save_label(sample.id, np.zeros_like(brain["mask"][0]))
        monkeypatch.setattr(hd.seg, "Segmentation", lambda *a, **k: segmentation(*a, **{**k, "omit_empty_frames": True}))
        export_project(project, tmp_path / "whole", fmt="dicom-seg")
        monkeypatch.undo()
        total = len(project.samples())
    with labeled_slice_project(tmp_path / "fresh", brain, slices=()) as fresh:
        report = import_labels(fresh, tmp_path / "whole")
        assert report.labeled == total and len(report.warnings) == 1
        assert f"{total - 2} slices nobody had labeled come in as all background (the SEG references" in report.warnings[0]


def test_volume_project_round_trip_and_deidentified_copy(tmp_path, brain):
    project, _ = create_project(tmp_path / "v", brain["series"], task="segmentation", names=LABELS.split(","), unit="image")
    with project:
        (sample,) = project.samples()
        project.save_label(sample.id, brain["mask"])
        (seg_file,) = [f for f in export_project(project, tmp_path / "out", fmt="dicom-seg", deidentify=True)]
        data = seg_file.read_bytes()
        assert not any(identifier.encode() in data for identifier in PATIENT)
        raw = pydicom.dcmread(seg_file)
        assert raw.PatientIdentityRemoved == "YES"
        assert raw.ReferencedSeriesSequence[0].SeriesInstanceUID == brain["series_uid"]  # still attaches
        project.save_label(sample.id, np.zeros_like(brain["mask"]))  # overwritten, then restored by import
        report = import_labels(project, seg_file)
        assert report.labeled == 1 and not report.errors
        np.testing.assert_array_equal(project.load_label(sample.id), brain["mask"])
        again = import_labels(project, seg_file)  # the label it holds already: no new version
        assert (again.labeled, again.unchanged) == (0, 1) and len(project.label_history(sample.id)) == 3


def test_seg_of_other_images_or_unknown_segments_is_refused_naming_the_file(tmp_path, brain):
    other = write_dicom_series(tmp_path / "other", brain["volume"], spacing=(8.0, 8.0, 8.0), modality="MR",
                               rescale=(1.0, 0.0), patient_id="PAT-0002")
    assert other
    project, _ = create_project(tmp_path / "o", tmp_path / "other", task="segmentation", names=LABELS.split(","))
    with project:
        project.save_label(project.samples()[3].id, brain["mask"][3])
        (foreign,) = export_project(project, tmp_path / "foreign", fmt="dicom-seg")
    liver, _ = create_project(tmp_path / "l", brain["series"], task="segmentation", names=["liver", "tumour"])
    with liver, labeled_slice_project(tmp_path / "g", brain, (4,)) as grey:
        report = import_labels(liver, foreign)
        assert report.labeled == 0 and str(foreign) in str(report.errors[0])
        assert "not in this project" in str(report.errors[0])
        (ours,) = export_project(grey, tmp_path / "grey", fmt="dicom-seg")
        report = import_labels(liver, ours)
        assert report.labeled == 0 and str(ours) in str(report.errors[0])
        assert "segment 1 'grey matter' is not a label" in str(report.errors[0])
        assert not liver.samples(labeled=True)  # nothing saved


def test_non_dicom_source_gets_an_error_naming_the_file(tmp_path, brain, capsys):
    nifti = write_nifti(tmp_path / "brain.nii.gz", brain["volume"])
    project, _ = create_project(tmp_path / "n", nifti, task="segmentation", names=LABELS.split(","))
    with project:
        project.save_label(project.samples()[2].id, brain["mask"][2])
        with pytest.raises(InputError, match="is not DICOM") as caught:
            export_project(project, tmp_path / "out", fmt="dicom-seg")
    assert str(nifti) in str(caught.value)
    code, _, err = cli(capsys, "export", tmp_path / "n", "--format", "dicom-seg", "--out", tmp_path / "out2")
    assert code == 2 and str(nifti) in err and "--format nifti" in err
    assert not list((tmp_path / "out2").glob("*.dcm"))


def test_prediction_segs_carry_the_algorithm_identification(tmp_path, brain, capsys):
    import json

    from medlabeler import __version__
    from medlabeler.engine.workflows.train import train_project
    from medlabeler.engine.training import run_to_end

    with labeled_slice_project(tmp_path / "p", brain) as project:
        result = run_to_end(train_project(project, method="supervised", config=TINY))
        n_samples = len(project.samples())
    code, out, err = cli(capsys, "predict", tmp_path / "p", "--format", "dicom-seg", "--deidentify",
                         "--out", tmp_path / "pred")
    assert code == 0, err
    assert "without patient identifiers" in out and not any(i in out + err for i in PATIENT)
    (seg_file,) = sorted((tmp_path / "pred").glob("*.dcm"))
    raw = pydicom.dcmread(seg_file)
    segment = raw.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "medlabeler" and algorithm.AlgorithmVersion == __version__
    assert f"model_version={result.version}" in algorithm.AlgorithmParameters.split(",")
    assert "method=supervised" in algorithm.AlgorithmParameters.split(",")
    assert json.loads((tmp_path / "pred" / "model.json").read_text())["model_version"] == result.version
    assert len(raw.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == n_samples  # every slice predicted
    seg = hd.seg.segread(seg_file)
    pixels = seg.get_pixels_by_source_instance(brain["uids"], combine_segments=True, relabel=False)
    assert pixels.shape == brain["mask"].shape and pixels.max() <= 2
    assert cli(capsys, "predict", tmp_path / "p", "--out", tmp_path / "nifti")[0] == 0  # the default stays NIfTI
    assert [f.name for f in (tmp_path / "nifti").glob("*.nii.gz")] == ["volume_0001_prediction.nii.gz"]


@pytest.mark.parametrize("name, meaning", [("Liver", "Liver"), ("lung", "Lung"), ("brain", "Brain"),
                                           ("grey matter", "Gray Matter"), ("white matter", "White Matter"),
                                           ("tumour", "Neoplasm"), ("bone", "Bone"), ("Bones", "Bone")])
def test_known_structures_get_snomed_codes(name, meaning):
    category, kind = segment_codes(name)
    assert kind.scheme_designator == "SCT" and kind.meaning == meaning
    expected = {"tumour": "Morphologically Abnormal Structure", "bone": "Tissue", "Bones": "Tissue"}.get(
        name, "Anatomical Structure")  # bone: SNOMED's bone tissue (a CT label "bone" was generic "Tissue")
    assert category.meaning.lower() == expected.lower()


def test_unknown_names_get_the_generic_tissue_code():
    category, kind = segment_codes("my odd label 7")
    assert (kind.value, kind.scheme_designator) == ("85756007", "SCT") and category.meaning == "Tissue"


def test_class_folders_of_dicom_files_import_their_classes(tmp_path, brain, capsys):
    """class_name/*.dcm (radiographs sorted by finding) labels each file with its folder's class."""
    volume = brain["volume"]
    expected = {}
    for name, slices in (("normal", (3, 6, 9)), ("effusion", (12, 15)), ("nodule", (18, 20))):
        for k in slices:
            (path,) = write_dicom_series(tmp_path / "xr" / name, volume[k][None], modality="DX", prefix=f"{k}_",
                                         rescale=(1.0, 0.0))
            expected[str(path)] = name
    code, out, err = cli(capsys, "init", tmp_path / "cls", "--images", tmp_path / "xr", "--task", "classification")
    assert code == 0 and "7 samples added, 7 labels imported" in out, (out, err)
    with Project.open(tmp_path / "cls", readonly=True) as project:
        names = project.task.names
        got = {s.path: names[int(project.load_label(s.id))] for s in project.samples(labeled=True)}
    assert sorted(names) == ["effusion", "nodule", "normal"] and got == expected


def test_a_dicom_volume_folder_name_is_no_class(tmp_path, brain):
    """Series folders (often named after the patient) never become class hints."""
    from medlabeler.engine.io import scan_sources

    write_dicom_series(tmp_path / "root" / "Doe_Jane", brain["volume"][:4], modality="MR", rescale=(1.0, 0.0))
    infos, errors = scan_sources(tmp_path / "root")
    assert not errors and [i.label_hint for i in infos] == [None]


def test_two_series_give_two_segs_each_of_its_own_series(tmp_path, brain):
    volume = brain["volume"][:6]
    for name in ("first", "second"):
        write_dicom_series(tmp_path / "images" / name, volume, spacing=(8.0, 8.0, 8.0), modality="MR",
                           rescale=(1.0, 0.0), patient_id=f"PAT-{name}")
    project, _ = create_project(tmp_path / "p", tmp_path / "images", task="segmentation", names=LABELS.split(","))
    with project:
        samples = project.samples()
        by_series = {}
        for sample in samples:
            by_series.setdefault(sample.series_uid, []).append(sample)
        for members in by_series.values():
            project.save_label(members[2].id, brain["mask"][2])
        files = [f for f in export_project(project, tmp_path / "out", fmt="dicom-seg")]
        referenced = {str(pydicom.dcmread(f).ReferencedSeriesSequence[0].SeriesInstanceUID) for f in files}
        assert len(files) == 2 and referenced == set(by_series)
        for sample in project.samples(labeled=True):
            project.save_label(sample.id, np.zeros_like(brain["mask"][2]))
        report = import_labels(project, tmp_path / "out")
        assert report.labeled == 2 and not report.errors
        for members in by_series.values():
            np.testing.assert_array_equal(project.load_label(members[2].id), brain["mask"][2])


def test_two_series_of_one_folder_keep_their_names_without_one_seg_over_the_other(tmp_path, brain):
    """With --keep-names both SEGs were named after the folder the two series share: the second
    was written over the first, and only one series came back; and `predict`'s model.json listed
    no SEG with its samples, as it does each NIfTI."""
    import json

    from medlabeler.engine.training import run_to_end
    from medlabeler.engine.workflows.train import train_project

    volume = brain["volume"][:5]
    for number in (1, 2):
        write_dicom_series(tmp_path / "scan", volume, spacing=(8.0, 8.0, 8.0), modality="MR", rescale=(1.0, 0.0),
                           series_number=number, prefix=f"s{number}_", seed=number)
    project, _ = create_project(tmp_path / "p", tmp_path / "scan", task="segmentation", names=LABELS.split(","))
    with project:
        by_series = {}
        for sample in project.samples():
            by_series.setdefault(sample.series_uid, []).append(sample)
        assert len(by_series) == 2 and len({s.path for s in project.samples()}) == 1
        for members in by_series.values():
            project.save_label(members[2].id, brain["mask"][2])
        files = export_project(project, tmp_path / "out", fmt="dicom-seg", keep_names=True)
        assert sorted(f.name for f in files) == ["scan_0002_seg.dcm", "scan_seg.dcm"]
        assert {str(pydicom.dcmread(f).ReferencedSeriesSequence[0].SeriesInstanceUID) for f in files} == set(by_series)
        run_to_end(train_project(project, method="supervised", config={**TINY, "steps": 1}))
    # predictions too, and model.json says which samples each SEG holds (it listed no file)
    ids = ",".join(str(s.id) for members in reversed(by_series.values()) for s in members)  # the last series first
    assert main(["predict", str(tmp_path / "p"), "--format", "dicom-seg", "--keep-names", "--samples", ids,
                 "--out", str(tmp_path / "pred")]) == 0
    volumes = json.loads((tmp_path / "pred" / "model.json").read_text())["volumes"]
    assert sorted(entry["file"] for entry in volumes) == ["scan_0002_prediction_seg.dcm", "scan_prediction_seg.dcm"]
    for entry in volumes:
        series = str(pydicom.dcmread(tmp_path / "pred" / entry["file"]).ReferencedSeriesSequence[0].SeriesInstanceUID)
        assert [s["sample"] for s in entry["samples"]] == [s.id for s in by_series[series]]


def test_single_dicom_image_round_trip(tmp_path):
    from pydicom.data import get_testdata_file

    image = Path(get_testdata_file("CT_small.dcm"))
    project, _ = create_project(tmp_path / "p", image, task="segmentation", names=["liver"])
    with project:
        (sample,) = project.samples()
        mask = (project.load_pixels(sample) > 0).astype(np.uint8)
        project.save_label(sample.id, mask)
        (seg_file,) = export_project(project, tmp_path / "out", fmt="dicom-seg")
        source_uid = str(pydicom.dcmread(image, stop_before_pixels=True).SOPInstanceUID)
        seg = hd.seg.segread(seg_file)
        np.testing.assert_array_equal(seg.get_pixels_by_source_instance([source_uid], combine_segments=True)[0], mask)
        project.save_label(sample.id, np.zeros_like(mask))
        assert import_labels(project, seg_file).labeled == 1
        np.testing.assert_array_equal(project.load_label(sample.id), mask)


def test_a_chest_x_ray_round_trips(tmp_path):
    """A projection radiograph has no slice thickness: highdicom writes the SEG's pixel measures
    without one and its reader then refused the file, so `import-labels` could not read back the
    SEG medlabeler had exported of a chest X-ray (a new user's trial)."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))  # chest CR, 1955x1841, MONOCHROME1
    small = np.ascontiguousarray(ds.pixel_array[::16, ::16])
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    ds.PixelSpacing = [2.4, 2.4]
    assert "SliceThickness" not in ds
    image = tmp_path / "cr.dcm"
    ds.save_as(image)
    project, _ = create_project(tmp_path / "p", image, task="segmentation", names=["lung", "heart"])
    with project:
        (sample,) = project.samples()
        mask = np.zeros(sample.shape, np.uint8)
        mask[20:80, 10:50], mask[60:100, 60:90] = 1, 2
        project.save_label(sample.id, mask)
        (seg_file,) = export_project(project, tmp_path / "out", fmt="dicom-seg")
        project.save_label(sample.id, np.zeros_like(mask))
        assert import_labels(project, seg_file).labeled == 1
        np.testing.assert_array_equal(project.load_label(sample.id), mask)


def test_a_source_highdicom_refuses_is_named_and_nothing_is_written(tmp_path):
    from pydicom.data import get_testdata_file

    image = Path(get_testdata_file("emri_small.dcm"))  # multi-frame MR without a Frame of Reference
    project, _ = create_project(tmp_path / "p", image, task="segmentation", names=["liver"], unit="image")
    with project:
        (sample,) = project.samples()
        project.save_label(sample.id, (project.load_pixels(sample) > 100).astype(np.uint8))
        with pytest.raises(InputError, match="no position for each frame .* write NIfTI instead") as caught:
            export_project(project, tmp_path / "out", fmt="dicom-seg")
    assert str(image) in str(caught.value) and not list((tmp_path / "out").glob("*"))


def test_some_frames_of_a_multi_frame_ct_get_a_seg_of_those_frames(tmp_path, capsys):
    """Enhanced CT (2 frames, a position each): a SEG of the one labeled frame references it."""
    from pydicom.data import get_testdata_file

    image = Path(get_testdata_file("eCT_Supplemental.dcm"))
    project, _ = create_project(tmp_path / "p", image, task="segmentation", names=["body"])
    with project:
        first, second = project.samples()
        mask = (project.load_pixels(second) > 0).astype(np.uint8)
        project.save_label(second.id, mask)
        (seg_file,) = export_project(project, tmp_path / "out", fmt="dicom-seg")
        seg = hd.seg.segread(seg_file)
        assert int(seg.NumberOfFrames) == 1
        file_frame = source_series(second.path, second.series_uid).frame_order[second.slice_index]
        referenced = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        assert int(referenced.ReferencedFrameNumber) == file_frame + 1
        project.save_label(second.id, np.zeros_like(mask))
        assert import_labels(project, seg_file).labeled == 1
        np.testing.assert_array_equal(project.load_label(second.id), mask)
        assert project.label(first.id) is None


def test_a_patients_name_never_reaches_a_warning(tmp_path, capsys):
    """highdicom warns that a one-word name "is unlikely to represent the intended person name",
    quoting it: the warning is kept, the name is not."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "Zebedee"
    ds.save_as(tmp_path / "ct.dcm")
    project, _ = create_project(tmp_path / "p", tmp_path / "ct.dcm", task="segmentation", names=["liver"])
    with project:
        (sample,) = project.samples()
        project.save_label(sample.id, (project.load_pixels(sample) > 0).astype(np.uint8))
    with pytest.warns(UserWarning) as warned:
        code, out, err = cli(capsys, "export", tmp_path / "p", "--format", "dicom-seg", "--deidentify",
                             "--out", tmp_path / "out")
    assert code == 0, err
    texts = [str(w.message) for w in warned]
    assert any("<patient identifier>" in t and "unlikely to represent" in t for t in texts)
    assert not any("Zebedee" in t for t in texts) and "Zebedee" not in out + err


def test_multi_frame_source_frames_follow_the_file_order(tmp_path, brain):
    """An enhanced multi-frame MR (highdicom's legacy conversion of the series, frames reversed)."""
    from pydicom.uid import generate_uid

    files = write_dicom_series(tmp_path / "ser", brain["volume"][:6], spacing=(8.0, 8.0, 8.0), modality="MR",
                               rescale=(1.0, 0.0))
    legacy = [pydicom.dcmread(f) for f in reversed(files)]
    for ds in legacy:
        for keyword in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID"):
            setattr(ds, keyword, "")
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
        legacy_datasets=legacy, series_instance_uid=generate_uid(), series_number=5, sop_instance_uid=generate_uid(),
        instance_number=1)
    enhanced.save_as(tmp_path / "enhanced.dcm")
    project, _ = create_project(tmp_path / "p", tmp_path / "enhanced.dcm", task="segmentation", names=["brain"],
                                unit="image")
    with project:
        (sample,) = project.samples()
        mask = brain["mask"][:6].clip(0, 1)
        project.save_label(sample.id, mask)
        (seg_file,) = export_project(project, tmp_path / "out", fmt="dicom-seg")
        seg = hd.seg.segread(seg_file)
        frames = seg.get_pixels_by_source_frame(str(enhanced.SOPInstanceUID), source_frame_numbers=list(range(1, 7)),
                                                combine_segments=True)
        np.testing.assert_array_equal(frames[::-1], mask)  # file frame 1 is the last slice
        project.save_label(sample.id, np.zeros_like(mask))
        report = import_labels(project, seg_file)
        assert report.labeled == 1 and not report.errors
        np.testing.assert_array_equal(project.load_label(sample.id), mask)


def test_predict_refuses_a_seg_it_cannot_write_before_the_model_runs_and_leaves_no_folder(tmp_path, monkeypatch):
    from pydicom.data import get_testdata_file

    from medlabeler.engine.training import run_to_end
    from medlabeler.engine.workflows import predict as predict_module
    from medlabeler.engine.workflows.prediction_export import write_predictions
    from medlabeler.engine.workflows.train import train_project

    project, _ = create_project(tmp_path / "p", get_testdata_file("emri_small.dcm"), task="segmentation",
                                names=["brain"])
    with project:
        sample = project.samples(split="train")[0]
        project.save_label(sample.id, (project.load_pixels(sample) > 100).astype(np.uint8))
        run_to_end(train_project(project, method="supervised", config={**TINY, "steps": 1}))
        monkeypatch.setattr(predict_module, "predict_samples", lambda *a, **k: pytest.fail("the model ran"))
        with pytest.raises(InputError, match="no position for each frame"):
            write_predictions(project, tmp_path / "out", fmt="dicom-seg")
    assert not (tmp_path / "out").exists()
