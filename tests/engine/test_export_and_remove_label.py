"""`medlabeler export` while the app holds the project open, and `medlabeler remove-label`."""

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medlabeler.cli import main
from medlabeler.engine.io import read_image
from medlabeler.engine.project.project_import import create_project
from medlabeler.engine.store import Project
from tests.engine.io_fixtures import write_nifti


def test_export_reads_a_project_another_app_holds_open(tmp_path, capsys):
    volume = np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5)
    source = write_nifti(tmp_path / "images" / "v.nii.gz", volume)
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["a"])
    mask = np.zeros((6, 5), np.uint8)
    mask[2:4, 1:3] = 1
    with project:
        sample = project.samples()[1]
        project.save_label(sample.id, mask, author="clinician")
        audits_before = len(project.audit_log())
        # the app keeps the project open for writing (this handle holds the lock) while a script exports
        assert main(["export", str(tmp_path / "proj"), "--format", "nifti", "--out", str(tmp_path / "out")]) == 0
        out = capsys.readouterr().out
        assert "open in another app" in out and "read-only" in out and "not recorded" in out
        assert len(project.audit_log()) == audits_before  # nothing was written behind the app's back
    exported = read_image(tmp_path / "out" / "volume_0001_labels.nii.gz").array
    assert np.array_equal(exported[sample.slice_index], mask)
    # with the app closed, the export is recorded as before
    assert main(["export", str(tmp_path / "proj"), "--format", "nifti", "--out", str(tmp_path / "out2")]) == 0
    with Project.open(tmp_path / "proj", readonly=True) as project:
        assert project.audit_log()[-1]["action"] == "export"


def test_export_says_what_it_replaced_and_what_else_lies_in_its_folder(tmp_path, capsys):
    """A re-export over an earlier one replaced its files without a word."""
    volume = np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5)
    source = write_nifti(tmp_path / "images" / "v.nii.gz", volume)
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["a"])
    with project:
        project.save_label(project.samples()[1].id, np.ones((6, 5), np.uint8), author="clinician")
    export = ["export", str(tmp_path / "proj"), "--format", "nifti", "--out", str(tmp_path / "out")]
    assert main(export) == 0
    first = capsys.readouterr().out
    assert "exported 1 mask file and labels.json" in first and "replaced" not in first and "note:" not in first
    assert "file names are left out (they can name the patient)" in first  # a CSV without them puzzled a user
    assert main([*export, "--keep-names", "--format", "csv"]) == 0
    assert "left out" not in capsys.readouterr().out
    (tmp_path / "out" / "volume_0009_labels.nii.gz").write_bytes(b"an earlier export's")
    assert main(export) == 0
    again = capsys.readouterr().out
    assert "2 of them replaced files of the same name there" in again
    assert "holds 2 other files, not from this export" in again  # the earlier one's and the CSV


def test_png_export_holds_the_masks_as_painted_and_imports_back(tmp_path, capsys):
    """A pathologist's tiles: NIfTI held each PNG's mask transposed, as (X, Y, 1), and there was no
    PNG export (a new user's trial). With --keep-names the masks import again as they are."""
    from PIL import Image

    from medlabeler.engine.project.project_import import import_labels

    rng = np.random.default_rng(0)
    (tmp_path / "tiles").mkdir()
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (30, 20, 3), dtype=np.uint8)).save(tmp_path / "tiles" / f"tile{k}.png")
    project, _ = create_project(tmp_path / "proj", tmp_path / "tiles", task="segmentation", names=["cell", "stain"])
    with project:
        masks = {}
        for sample in project.samples()[:2]:
            masks[sample.id] = rng.integers(0, 3, (30, 20)).astype(np.uint8)
            project.save_label(sample.id, masks[sample.id])
    out = tmp_path / "out"
    assert main(["export", str(tmp_path / "proj"), "--format", "png", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "exported 2 mask files and labels.json" in said and "numbered images" in said
    index = json.loads((out / "labels.json").read_text())
    assert index["labels"] == {"1": "cell", "2": "stain"} and "source" not in index["masks"][0]
    for entry in index["masks"]:
        assert np.array_equal(np.asarray(Image.open(out / entry["file"])), masks[entry["sample"]])
    named = tmp_path / "named"
    assert main(["export", str(tmp_path / "proj"), "--format", "png", "--out", str(named), "--keep-names"]) == 0
    (named / "labels.json").unlink()
    with Project.open(tmp_path / "proj") as project:
        for sample_id in masks:
            project.remove_label(sample_id)
        assert import_labels(project, named).labeled == 2
        for sample_id, mask in masks.items():
            assert np.array_equal(project.load_label(sample_id), mask)


def test_png_masks_named_as_their_images_never_replace_them_nor_each_other(tmp_path):
    """Exported with --keep-names into the images' own folder, the masks replaced the images (and
    trained as them), and without it they lay among them for the next import to take for images;
    two images of one name in two folders gave one mask file (reviews and a trial)."""
    from PIL import Image

    from medlabeler.engine.errors import ProjectError
    from medlabeler.engine.project.export import export_project

    for folder in ("a", "b"):
        (tmp_path / "tiles" / folder).mkdir(parents=True)
        Image.fromarray(np.full((8, 6), 50, np.uint8)).save(tmp_path / "tiles" / folder / "tile.png")
    project, _ = create_project(tmp_path / "proj", tmp_path / "tiles", task="segmentation", names=["cell"])
    with project:
        for k, sample in enumerate(project.samples()):
            project.save_label(sample.id, np.full((8, 6), k % 2, np.uint8))
        before = (tmp_path / "tiles" / "a" / "tile.png").read_bytes()
        for keep_names in (True, False):
            with pytest.raises(ProjectError, match="holds the project's images; masks there would replace them"):
                export_project(project, tmp_path / "tiles" / "a", fmt="png", keep_names=keep_names)
        assert (tmp_path / "tiles" / "a" / "tile.png").read_bytes() == before
        assert sorted(p.name for p in (tmp_path / "tiles" / "a").iterdir()) == ["tile.png"]
        files = export_project(project, tmp_path / "out", fmt="png", keep_names=True)
    assert sorted(p.name for p in files) == ["labels.json", "tile.png", "tile_0002.png"]


def test_black_and_white_masks_import_as_the_one_label(tmp_path):
    """ISIC's lesion masks are 0/255 PNGs: refused as "value 255" before (a new user's trial). In a
    project of two labels 255 stays ambiguous: refused, with how to save them."""
    from PIL import Image

    from medlabeler.engine.errors import InputError
    from medlabeler.engine.project.project_import import import_labels

    (tmp_path / "tiles").mkdir()
    (tmp_path / "masks").mkdir()
    mask = np.zeros((30, 20), np.uint8)
    mask[5:15, 4:12] = 255
    Image.fromarray(np.full((30, 20, 3), 90, np.uint8)).save(tmp_path / "tiles" / "lesion.png")
    Image.fromarray(mask).save(tmp_path / "masks" / "lesion.png")
    project, _ = create_project(tmp_path / "one", tmp_path / "tiles", task="segmentation", names=["lesion"])
    with project:
        report = import_labels(project, tmp_path / "masks")
        assert report.labeled == 1 and any("0 and 255" in w for w in report.warnings)
        assert np.array_equal(project.load_label(project.samples()[0].id), mask // 255)
    project, _ = create_project(tmp_path / "two", tmp_path / "tiles", task="segmentation", names=["lesion", "hair"])
    with project:
        report = import_labels(project, tmp_path / "masks")
        assert report.labeled == 0
        (error,) = report.errors
        assert isinstance(error, InputError) and "holds value 255 but the project has 2 labels; a black-and-white" in str(error)


def test_png_export_of_whole_volumes_is_refused_before_writing(tmp_path):
    from medlabeler.engine.errors import ProjectError
    from medlabeler.engine.project.export import export_project

    source = write_nifti(tmp_path / "images" / "v.nii.gz", np.ones((3, 6, 5), np.float32))
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["a"], unit="image")
    with project:
        project.save_label(project.samples()[0].id, np.ones((3, 6, 5), np.uint8))
        with pytest.raises(ProjectError, match="whole volume and PNG holds 2D masks; export it as NIfTI or DICOM-SEG"):
            export_project(project, tmp_path / "out", fmt="png")
    assert not list((tmp_path / "out").iterdir())


def test_remove_label_makes_samples_unlabeled_from_the_command_line(tmp_path, capsys):
    source = write_nifti(tmp_path / "images" / "v.nii.gz", np.ones((3, 6, 5), np.float32))
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["a"])
    with project:
        first, second = (s.id for s in project.samples()[:2])
        project.save_label(first, np.zeros((6, 5), np.uint8))
    assert main(["remove-label", str(tmp_path / "proj"), str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert f"sample {first}: label removed (version 1 stays in the history)" in out
    assert f"sample {second}: no label to remove" in out
    with Project.open(tmp_path / "proj", readonly=True) as project:
        assert project.labeled_ids() == frozenset() and len(project.label_history(first)) == 1
    assert main(["remove-label", str(tmp_path / "proj"), "999"]) != 0  # an unknown sample is an error


def test_history_lists_a_labels_versions_and_restores_one(tmp_path, capsys):
    """The versions were kept, but only a Python call (`revert_label`) brought one back, and the
    damaged-mask message told the user to make that call."""
    source = write_nifti(tmp_path / "images" / "v.nii.gz", np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5))
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["liver", "tumour"])
    careful = np.zeros((6, 5), np.uint8)
    careful[1:3, 1:3], careful[4, 4] = 1, 2
    with project:
        sample = project.samples()[1]
        project.save_label(sample.id, careful, author="dr_a")
        project.save_label(sample.id, np.zeros((6, 5), np.uint8), author="dr_b", origin="imported")
    proj = str(tmp_path / "proj")
    assert main(["history", proj, str(sample.id)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"sample {sample.id} (segmentation, {sample.split}): 2 saved versions"
    assert lines[1].startswith("  v2 · imported, dr_b · ") and lines[1].endswith("background only   <- its label now")
    assert lines[2].startswith("  v1 · by hand, dr_a · ") and lines[2].endswith(" · liver, tumour")
    assert main(["history", proj, str(sample.id), "--restore", "1"]) == 0
    assert capsys.readouterr().out.strip() == (f"sample {sample.id}: version 1 is its label again (version 2 stays in "
                                               "the history)")
    assert main(["history", proj, str(sample.id), "--restore", "1"]) == 0
    assert capsys.readouterr().out.strip() == f"sample {sample.id}: version 1 is its label already"
    with Project.open(proj) as project:
        assert np.array_equal(project.load_label(sample.id), careful)
        project.remove_label(sample.id)
        other = project.samples()[2]
    assert main(["history", proj, str(sample.id)]) == 0
    assert "unlabeled now: its label was removed" in capsys.readouterr().out
    assert main(["history", proj, str(other.id)]) == 0
    assert capsys.readouterr().out.strip() == f"sample {other.id} (segmentation, {other.split}): never labeled"
    assert main(["history", proj, str(sample.id), "--restore", "7"]) == 2
    assert "has no label version 7" in capsys.readouterr().err
    # a damaged mask file names the command that brings the intact version back
    with Project.open(proj) as project:
        project.revert_label(sample.id, 2)
        damaged = tmp_path / "proj" / project.label(sample.id).mask_relpath
        damaged.write_bytes(b"torn")
        with pytest.raises(Exception, match=rf"`medlabeler history PROJECT {sample.id} --restore 1`"):
            project.load_label(sample.id)


def test_the_masks_of_a_slice_project_export_import_again_as_they_are_named(tmp_path):
    """A trial: `export --keep-names` wrote brain_labels.nii.gz and brain_slice0002.png, and
    import-labels named neither ("no image in the project has this name"); a NIfTI export's
    unlabeled slices (zeros) would have come back as painted background; and 3D Slicer's
    brain-label.nii.gz was refused likewise."""
    import shutil

    from medlabeler.engine.project.project_import import import_labels

    volume = np.arange(5 * 6 * 4, dtype=np.float32).reshape(5, 6, 4)
    write_nifti(tmp_path / "images" / "brain.nii.gz", volume)
    project, _ = create_project(tmp_path / "proj", tmp_path / "images", task="segmentation", names=["a", "b"])
    masks = {}
    with project:
        for sample in project.samples()[1:3]:
            masks[sample.slice_index] = np.full((6, 4), sample.slice_index % 3, np.uint8)
            project.save_label(sample.id, masks[sample.slice_index])
    for fmt in ("nifti", "png"):
        assert main(["export", str(tmp_path / "proj"), "--format", fmt, "--out", str(tmp_path / fmt),
                     "--keep-names"]) == 0
    assert sorted(os.listdir(tmp_path / "png")) == ["brain_slice0001.png", "brain_slice0002.png", "labels.json"]
    assert main(["export", str(tmp_path / "proj"), "--format", "nifti", "--out", str(tmp_path / "numbered")]) == 0
    (tmp_path / "slicer").mkdir()
    shutil.copy(tmp_path / "nifti" / "brain_labels.nii.gz", tmp_path / "slicer" / "brain-label.nii.gz")
    (tmp_path / "tools").mkdir()  # slices as other tools name them, no labels.json
    shutil.copy(tmp_path / "png" / "brain_slice0001.png", tmp_path / "tools" / "brain_slice0001_seg.png")
    shutil.copy(tmp_path / "png" / "brain_slice0002.png", tmp_path / "tools" / "brain_labels_slice0002.png")
    shutil.copytree(tmp_path / "nifti", tmp_path / "edited")  # a slice painted in another tool since the export
    edited = nib.load(tmp_path / "edited" / "brain_labels.nii.gz")
    data = np.asarray(edited.dataobj).copy()
    data[..., 4] = 1  # slice 4 (the NIfTI's last axis is our first)
    nib.save(nib.Nifti1Image(data, edited.affine, edited.header), tmp_path / "edited" / "brain_labels.nii.gz")
    masks[4] = np.ones((6, 4), np.uint8)
    # the default export names no image: its labels.json brings it back (test below)
    for folder, expected in (("nifti", 2), ("png", 2), ("numbered", 2), ("tools", 2), ("slicer", 5), ("edited", 3)):
        fresh, _ = create_project(tmp_path / f"again_{folder}", tmp_path / "images", task="segmentation",
                                  names=["a", "b"])
        with fresh:
            report = import_labels(fresh, tmp_path / folder)
            assert (report.labeled, report.errors) == (expected, []), folder
            by_slice = {s.slice_index: s.id for s in fresh.samples()}
            for z, mask in masks.items():
                if folder == "edited" or z != 4:
                    assert np.array_equal(fresh.load_label(by_slice[z]), mask), (folder, z)
            if folder in ("nifti", "png", "numbered", "tools"):
                assert fresh.labeled_ids() == {by_slice[1], by_slice[2]}
            if folder == "slicer":  # a whole scan's mask: the slices nobody painted, said
                (warning,) = report.warnings
                assert warning.startswith(f"{tmp_path / 'slicer' / 'brain-label.nii.gz'}: 3 slices nobody had "
                                          "labeled come in as all background")
            if folder == "edited":
                assert fresh.labeled_ids() == {by_slice[1], by_slice[2], by_slice[4]}
                assert report.warnings == [f"{tmp_path / 'edited' / 'brain_labels.nii.gz'}: slice 4 holds labels its "
                                           "labels.json does not list as labeled: imported too"]


def test_an_export_imports_back_by_its_labels_json_without_names_and_never_into_another_image(tmp_path, capsys):
    """A de-identified export (volume_0001_labels.nii.gz, image_0001.png: the default) did not import
    back at all, and a `--keep-names` export of two scans of one name (ct, ct_0002) not the second:
    a clinician corrects masks in another tool and brings them back. Its labels.json lists each
    file's sample ids and its image's content key; an import takes the ids only where this
    project's image under them is the one exported, and otherwise goes by name, as before."""
    from PIL import Image

    from medlabeler.engine.project.project_import import import_labels

    rng = np.random.default_rng(0)
    for patient in ("p1", "p2"):  # one file name, two patients: the way many hospitals' folders look
        write_nifti(tmp_path / "scans" / patient / "ct.nii.gz", rng.normal(size=(4, 6, 5)).astype(np.float32))
    project, _ = create_project(tmp_path / "proj", tmp_path / "scans", task="segmentation", names=["a", "b"])
    masks = {}
    with project:
        for sample in project.samples()[::3]:  # slices of both scans
            masks[sample.id] = rng.integers(0, 3, (6, 5)).astype(np.uint8)
            project.save_label(sample.id, masks[sample.id])
        assert len({project.sample(i).path for i in masks}) == 2
    exports = {}
    for fmt in ("nifti", "png"):
        for names in ((), ("--keep-names",)):
            out = tmp_path / f"{fmt}{''.join(names)}"
            assert main(["export", str(tmp_path / "proj"), "--format", fmt, "--out", str(out), *names]) == 0
            exports[out.name] = out
    assert sorted(os.listdir(exports["nifti--keep-names"])) == ["ct_0002_labels.nii.gz", "ct_labels.nii.gz",
                                                               "labels.json"]
    assert "import-labels" in capsys.readouterr().out  # the export says it comes back
    for name, out in exports.items():
        with Project.open(tmp_path / "proj") as project:
            for sample_id in masks:
                project.save_label(sample_id, np.zeros((6, 5), np.uint8))  # since changed
            report = import_labels(project, out)
            assert (report.labeled, report.errors) == (len(masks), []), name
            for sample_id, mask in masks.items():
                assert np.array_equal(project.load_label(sample_id), mask), (name, sample_id)
            assert project.labeled_ids() == set(masks)
    # renamed in another tool as tools name masks (a trial: each was "no image has this name")
    renames = {"nifti": {"volume_0001_labels.nii.gz": "volume_0001_seg.nii.gz",
                         "volume_0002_labels.nii.gz": "volume_0002_labels-label.nii"},
               "png--keep-names": {"ct_slice0000.png": "ct_seg_slice0000.png",
                                   "ct_0002_slice0002.png": "ct_0002_slice0002_seg.png"}}
    for name, moves in renames.items():
        for old, new in moves.items():
            image = nib.load(exports[name] / old) if old.endswith(".nii.gz") else None
            if image is not None:
                nib.save(image, exports[name] / new)  # uncompressed, as the name says
                (exports[name] / old).unlink()
            else:
                (exports[name] / old).rename(exports[name] / new)
        with Project.open(tmp_path / "proj") as project:
            for sample_id in masks:
                project.save_label(sample_id, np.zeros((6, 5), np.uint8))
            report = import_labels(project, exports[name])
            assert (report.labeled, report.errors) == (len(masks), []), name
            assert all(np.array_equal(project.load_label(i), mask) for i, mask in masks.items())
            assert project.labeled_ids() == set(masks)  # only the slices labeled
    # another project, whose sample ids name other images: never by id; the name then finds no image
    other, _ = create_project(tmp_path / "other", tmp_path / "scans" / "p2", task="segmentation", names=["a", "b"])
    with other:
        report = import_labels(other, exports["nifti"])
        assert report.labeled == 0 and other.status()["labeled"] == 0
        assert len(report.errors) == 2 and all("is not the one exported" in str(e) for e in report.errors)
        # an image changed since its export is not that image any more
        index = json.loads((exports["png"] / "labels.json").read_text())
        for entry in index["masks"]:
            entry["image_key"] = "0" * len(entry["image_key"])
        (exports["png"] / "labels.json").write_text(json.dumps(index))
        assert import_labels(other, exports["png"]).labeled == 0
        # an export written before the keys names no image, and says to export again
        for entry in index["masks"]:
            del entry["image_key"]
        (exports["png"] / "labels.json").write_text(json.dumps(index))
        error = import_labels(other, exports["png"]).errors[0]
        assert "does not say which image it was (an older export): export again" in str(error)
    # the PNGs of 2D images, by their index too
    (tmp_path / "tiles").mkdir()
    for k in range(2):
        Image.fromarray(rng.integers(0, 255, (8, 7), dtype=np.uint8)).save(tmp_path / "tiles" / f"t{k}.png")
    tiles, _ = create_project(tmp_path / "tiles_proj", tmp_path / "tiles", task="segmentation", names=["a"])
    with tiles:
        mask = rng.integers(0, 2, (8, 7)).astype(np.uint8)
        tiles.save_label(tiles.samples()[1].id, mask)
    assert main(["export", str(tmp_path / "tiles_proj"), "--format", "png", "--out", str(tmp_path / "t_out")]) == 0
    with Project.open(tmp_path / "tiles_proj") as tiles:
        tiles.remove_label(tiles.samples()[1].id)
        assert import_labels(tiles, tmp_path / "t_out").labeled == 1
        assert np.array_equal(tiles.load_label(tiles.samples()[1].id), mask)


def test_a_csv_export_edited_in_a_spreadsheet_imports_back_by_sample_id(tmp_path):
    """labels.csv could not be read back (its first column is the sample id, not an image): a
    colleague's corrections of the classes in a spreadsheet had no way in. Rows go by sample id
    where the project's image under it is the one exported; a row of another project's export never
    lands on this one's images."""
    import csv

    from medlabeler.engine.project.export import export_project
    from medlabeler.engine.project.project_import import import_labels
    from tests.engine.io_fixtures import make_isic_folder

    make_isic_folder(tmp_path / "isic", {"nevus": 3, "melanoma": 3})
    project, _ = create_project(tmp_path / "proj", tmp_path / "isic", task="classification")
    with project:
        names = project.task.names
        export_project(project, tmp_path / "out", fmt="csv")
        before = {s.id: int(project.load_label(s.id)) for s in project.samples()}
    table = list(csv.reader(open(tmp_path / "out" / "labels.csv", newline="")))
    assert table[0] == ["sample", "split", "slice", "label", "origin", "image_key"]
    changed = int(table[2][0])
    table[2][3] = names[1 - before[changed]]  # the colleague's one correction
    with open(tmp_path / "edited.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(table)
    with Project.open(tmp_path / "proj") as project:
        report = import_labels(project, tmp_path / "edited.csv")
        assert (report.labeled, report.unchanged, report.errors) == (1, 5, [])
        assert {s.id: int(project.load_label(s.id)) for s in project.samples()} == {
            **before, changed: 1 - before[changed]}
    # another project of some of the images, other ids: nothing by id; by name where the export kept them
    make_isic_folder(tmp_path / "other_images", {"melanoma": 2, "nevus": 2}, seed=1)
    other, _ = create_project(tmp_path / "other", tmp_path / "other_images", task="classification")
    with other:
        report = import_labels(other, tmp_path / "edited.csv")
        assert report.labeled == report.unchanged == 0 and len(report.errors) == 6
        assert "is not the one exported" in str(report.errors[0]) and "line 2" in str(report.errors[0])
    with Project.open(tmp_path / "proj") as project:
        export_project(project, tmp_path / "named", fmt="csv", keep_names=True)
        named = list(csv.reader(open(tmp_path / "named" / "labels.csv", newline="")))
        assert named[0][5:] == ["image_key", "source"]
        for row in named[1:]:
            row[5] = "0" * len(row[5])  # not these images' keys: refused, also by their names
        with open(tmp_path / "named" / "labels.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(named)
        report = import_labels(project, tmp_path / "named" / "labels.csv")
        assert report.labeled == 0 and "of this name is not the one exported" in str(report.errors[0])
        for row in named[1:]:
            row[5] = ""  # no keys (an older export): by the names the export kept
        with open(tmp_path / "named" / "labels.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(named)
        for sample in project.samples():
            project.remove_label(sample.id)
        report = import_labels(project, tmp_path / "named" / "labels.csv")
        assert (report.labeled, report.errors) == (6, [])
        assert {s.id: int(project.load_label(s.id)) for s in project.samples()} == {
            **before, changed: 1 - before[changed]}
    older = [row[:5] for row in table]  # an export from before the image keys
    with open(tmp_path / "older.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(older)
    with Project.open(tmp_path / "proj") as project:
        report = import_labels(project, tmp_path / "older.csv")
        assert report.labeled == 0 and "(no image_key: an export older than that column" in str(report.errors[0])


def test_an_export_never_lands_on_another_patients_series_nor_on_another_series_of_its_folder(tmp_path):
    """(A review.) A DICOM folder's content key is its files' names and sizes, which two patients'
    series from one scanner can share, and two series of one folder share one folder: the key
    of an export's file holds its series too."""
    import sqlite3

    from medlabeler.engine.project.export import export_project
    from medlabeler.engine.project.project_import import import_labels
    from tests.engine.io_fixtures import write_dicom_series

    rng = np.random.default_rng(0)
    for patient in ("p1", "p2"):  # the same file names and sizes
        write_dicom_series(tmp_path / patient / "series", rng.integers(0, 500, (4, 8, 8)).astype(np.float32),
                           patient_id=f"PAT-000{patient[-1]}")
    for number in (1, 2):  # two series in one folder
        write_dicom_series(tmp_path / "study" / "both", rng.integers(0, 500, (4, 8, 8)).astype(np.float32),
                           prefix=f"s{number}_", series_number=number, seed=number)
    first, _ = create_project(tmp_path / "first", tmp_path / "p1", task="segmentation", names=["tumour"])
    with first:
        first.save_label(first.samples()[1].id, np.ones((8, 8), np.uint8))
        export_project(first, tmp_path / "out_p1", fmt="nifti")
    study, _ = create_project(tmp_path / "study_a", tmp_path / "study" / "both", task="segmentation",
                              names=["tumour"])
    with study:
        second_series = sorted({s.series_uid for s in study.samples()})[1]
        target = [s for s in study.samples() if s.series_uid == second_series][2]
        study.save_label(target.id, np.ones((8, 8), np.uint8))
        export_project(study, tmp_path / "out_study", fmt="nifti")
    other, _ = create_project(tmp_path / "other", tmp_path / "p2", task="segmentation", names=["tumour"])
    write_nifti(tmp_path / "study" / "a_first.nii.gz", rng.normal(size=(4, 8, 8)).astype(np.float32))
    shifted, _ = create_project(tmp_path / "study_b", tmp_path / "study", task="segmentation", names=["tumour"])
    for project, out in ((other, "out_p1"), (shifted, "out_study")):
        with project:
            report = import_labels(project, tmp_path / out)
            assert report.labeled == 0 and "is not the one exported" in str(report.errors[0]), out
    # a project made before medlabeler kept content keys: its images' keys are read from the files
    sqlite3.connect(tmp_path / "first" / "project.sqlite").execute(
        "UPDATE samples SET content_key = NULL").connection.commit()
    with Project.open(tmp_path / "first") as project:
        export_project(project, tmp_path / "out_old", fmt="nifti")
        project.remove_label(project.samples()[1].id)
        assert import_labels(project, tmp_path / "out_old").labeled == 1


def test_a_csv_of_classes_names_one_image_or_says_which_it_cannot_tell(tmp_path):
    """(A review.) Rows went to every image of the name they gave (two folders' img.png both took
    one row's class); an export's CSV saved by a spreadsheet (semicolons, columns moved, a blank
    first line) was read as image,label rows."""
    import csv

    from PIL import Image

    from medlabeler.engine.project.export import export_project
    from medlabeler.engine.project.project_import import import_labels

    rng = np.random.default_rng(0)
    for patient, name in (("p1", "img.png"), ("p2", "img.png"), ("p3", "other.png")):
        (tmp_path / "images" / patient).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (8, 7, 3), dtype=np.uint8)).save(tmp_path / "images" / patient / name)
    project, _ = create_project(tmp_path / "proj", tmp_path / "images", task="classification",
                                names=["benign", "malignant"])
    with project:
        by_folder = {Path(s.path).parent.name: s.id for s in project.samples()}
        (tmp_path / "plain.csv").write_text("image,label\nimg.png,benign\np2/img.png,malignant\np3/img.png,benign\n")
        report = import_labels(project, tmp_path / "plain.csv")
        assert report.labeled == 1 and "2 images in the project are named 'img.png'" in str(report.errors[0])
        assert "it names folder 'p3'" in str(report.errors[1])  # p3's patient has no img.png
        assert project.labeled_ids() == {by_folder["p2"]} and project.load_label(by_folder["p2"]) == 1
        (tmp_path / "sheet.csv").write_text("source;label\np1/img.png; Malignant \n")  # a spreadsheet's
        report = import_labels(project, tmp_path / "sheet.csv")
        assert (report.labeled, report.errors) == (1, []) and project.load_label(by_folder["p1"]) == 1
        (tmp_path / "elsewhere.csv").write_text("image,label\n/home/alice/study/p2/img.png,benign\n")  # another root
        report = import_labels(project, tmp_path / "elsewhere.csv")
        assert (report.labeled, report.errors) == (1, []) and project.load_label(by_folder["p2"]) == 0
        project.save_label(by_folder["p2"], 1)
        project.save_label(by_folder["p1"], 0)
        export_project(project, tmp_path / "out", fmt="csv", keep_names=True)
        table = list(csv.reader(open(tmp_path / "out" / "labels.csv", newline="")))
        at = {name: table[0].index(name) for name in table[0]}
        for row in table[1:]:
            row[at["image_key"]] = ""  # no key (an older export): by the source column's path
            row[at["label"]] = "malignant" if row[at["label"]] == "benign" else "benign"
        moved = [[row[at[c]] for c in ("label", "image_key", "sample", "source")] for row in table]
        (tmp_path / "spreadsheet.csv").write_text("\n" + "\n".join(";".join(row) for row in moved) + "\n")
        report = import_labels(project, tmp_path / "spreadsheet.csv")
        assert (report.labeled, report.errors) == (2, [])
        assert project.load_label(by_folder["p1"]) == 1 and project.load_label(by_folder["p2"]) == 0


def test_masks_back_from_another_site_land_on_their_own_patients_slices_or_nowhere(tmp_path):
    """A trial: a mask in masks/p02/ named t1 went onto p01's t1 (p02 had none); a --keep-names
    export of site A's brain imported into site B's other brain of the same name; a tool renamed
    brain_labels.nii.gz to brain-label.nii.gz and every slice never labeled came in as painted
    background."""
    import shutil

    from PIL import Image

    from medlabeler.engine.project.export import export_project
    from medlabeler.engine.project.project_import import import_labels

    rng = np.random.default_rng(0)
    write_nifti(tmp_path / "scans" / "p01" / "t1.nii.gz", rng.normal(size=(5, 6, 4)).astype(np.float32))
    write_nifti(tmp_path / "scans" / "p02" / "flair.nii.gz", rng.normal(size=(5, 6, 4)).astype(np.float32))
    project, _ = create_project(tmp_path / "proj", tmp_path / "scans", task="segmentation", names=["a"])
    (tmp_path / "masks" / "p02").mkdir(parents=True)
    Image.fromarray(np.ones((6, 4), np.uint8)).save(tmp_path / "masks" / "p02" / "t1_slice0002.png")
    with project:
        report = import_labels(project, tmp_path / "masks")
        assert report.labeled == 0 and project.status()["labeled"] == 0
        assert "it names folder 'p02', and no image of this name in the project is in a folder of that name (one " \
               "is in p01)" in str(report.errors[0])
        (tmp_path / "masks" / "p02" / "t1_slice0002.png").rename(tmp_path / "masks" / "p02" / "flair_slice0002.png")
        assert import_labels(project, tmp_path / "masks").labeled == 1  # its own patient's: in
        t1 = [s for s in project.samples() if s.path.endswith("t1.nii.gz")]
        for sample in t1[1:3]:
            project.save_label(sample.id, np.ones((6, 4), np.uint8))
        export_project(project, tmp_path / "site_a", fmt="nifti", keep_names=True)
        for sample in t1[1:3]:
            project.remove_label(sample.id)
    # the tool renamed the file: labels.json still says which slices were labeled (its image's key)
    shutil.copytree(tmp_path / "site_a", tmp_path / "renamed")
    (tmp_path / "renamed" / "t1_labels.nii.gz").rename(tmp_path / "renamed" / "t1-label.nii.gz")
    with Project.open(tmp_path / "proj") as project:
        report = import_labels(project, tmp_path / "renamed")
        assert report.labeled == 2 and {project.sample(i).slice_index for i in project.labeled_ids()
                                        if project.sample(i).path.endswith("t1.nii.gz")} == {1, 2}
    # site B: another patient's t1.nii.gz in a project of its own
    write_nifti(tmp_path / "site_b_scans" / "t1.nii.gz", rng.normal(size=(5, 6, 4)).astype(np.float32))
    other, _ = create_project(tmp_path / "site_b", tmp_path / "site_b_scans", task="segmentation", names=["a"])
    with other:
        report = import_labels(other, tmp_path / "site_a")
        assert report.labeled == 0 and other.status()["labeled"] == 0
        (error,) = [e for e in report.errors if "t1_labels" in str(e)]
        assert "says it holds the labels of another image than this project's image of its name" in str(error)


def test_palette_and_grey_rgb_pngs_import_their_label_numbers_and_a_colour_one_is_refused(tmp_path):
    """A trial: a label map saved as a palette PNG (its indices the label numbers) was refused as
    "an RGB image", and so was one saved as RGB with three equal channels."""
    from PIL import Image

    from medlabeler.engine.project.project_import import import_labels

    rng = np.random.default_rng(0)
    (tmp_path / "tiles").mkdir()
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (8, 7), dtype=np.uint8)).save(tmp_path / "tiles" / f"t{k}.png")
    project, _ = create_project(tmp_path / "proj", tmp_path / "tiles", task="segmentation", names=["a", "b"])
    labels = rng.integers(0, 3, (8, 7)).astype(np.uint8)
    (tmp_path / "masks").mkdir()
    palette = Image.fromarray(labels, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    palette.save(tmp_path / "masks" / "t0.png")
    Image.fromarray(np.stack([labels] * 3, axis=-1)).save(tmp_path / "masks" / "t1.png")
    colour = np.stack([labels * 120, labels * 0, labels * 0], axis=-1)  # red on black
    Image.fromarray(colour).save(tmp_path / "masks" / "t2.png")
    (tmp_path / "quantized").mkdir()  # the same picture as an optimizer stores it: red may be index 0
    quantized = Image.fromarray(colour).quantize(colors=3)
    assert tuple(quantized.getpalette()[:3]) != (0, 0, 0)
    quantized.save(tmp_path / "quantized" / "t2.png")
    with project:
        report = import_labels(project, tmp_path / "masks")
        assert report.labeled == 2 and "mask is a colour image" in str(report.errors[0])
        report = import_labels(project, tmp_path / "quantized")
        assert report.labeled == 0 and "mask is a colour image" in str(report.errors[0])
        by_name = {Path(s.path).stem: s.id for s in project.samples()}
        for name in ("t0", "t1"):
            assert np.array_equal(project.load_label(by_name[name]), labels), name


def test_an_image_whose_own_name_ends_as_a_mask_does_keeps_its_masks(tmp_path):
    """(A review.) With liver.nii.gz and liver_seg.nii.gz in a project, liver_seg_slice0002.png went
    onto liver's slice 2 once tool suffixes were read; and a tool's liver_slice0002_seg.png took the
    labels.json entry of liver_seg's slice 2. Masks under folders from another root or a dated
    folder above the patient's were refused."""
    from PIL import Image

    from medlabeler.engine.project.export import export_project
    from medlabeler.engine.project.project_import import import_labels

    rng = np.random.default_rng(0)
    for name in ("liver", "liver_seg"):
        write_nifti(tmp_path / "data" / "p01" / f"{name}.nii.gz", rng.normal(size=(5, 6, 4)).astype(np.float32))
    project, _ = create_project(tmp_path / "proj", tmp_path / "data", task="segmentation", names=["a"])
    mask = np.zeros((6, 4), np.uint8)
    mask[1:3, 1:3] = 1
    with project:
        slice_2 = {Path(s.path).name.split(".")[0]: s.id for s in project.samples() if s.slice_index == 2}
        project.save_label(slice_2["liver_seg"], mask)
        export_project(project, tmp_path / "out", fmt="png", keep_names=True)
        project.remove_label(slice_2["liver_seg"])
    (tmp_path / "out" / "labels.json").rename(tmp_path / "labels.json")
    with Project.open(tmp_path / "proj") as project:  # by its name alone
        assert import_labels(project, tmp_path / "out").labeled == 1
        assert project.labeled_ids() == {slice_2["liver_seg"]}
        project.remove_label(slice_2["liver_seg"])
    (tmp_path / "labels.json").rename(tmp_path / "out" / "labels.json")
    (tmp_path / "out" / "liver_seg_slice0002.png").rename(tmp_path / "out" / "liver_slice0002_seg.png")
    with Project.open(tmp_path / "proj") as project:  # a name that names liver beats the entry of liver_seg
        assert import_labels(project, tmp_path / "out").labeled == 1
        assert project.labeled_ids() == {slice_2["liver"]}
        export_project(project, tmp_path / "out_liver", fmt="png", keep_names=True)  # lists liver_slice0002.png
        project.remove_label(slice_2["liver"])
    (tmp_path / "out_liver" / "liver_slice0002.png").rename(tmp_path / "out_liver" / "liver_seg_slice0002.png")
    with Project.open(tmp_path / "proj") as project:  # ...and one that names liver_seg beats liver's entry
        assert import_labels(project, tmp_path / "out_liver").labeled == 1
        assert project.labeled_ids() == {slice_2["liver_seg"]}
        project.remove_label(slice_2["liver_seg"])
    dated = tmp_path / "corrections" / "round2" / "p01"
    dated.mkdir(parents=True)
    Image.fromarray(mask).save(dated / "liver_seg_slice0003.png")
    with Project.open(tmp_path / "proj") as project:
        report = import_labels(project, tmp_path / "corrections")
        assert (report.labeled, report.errors) == (1, [])


def test_a_png_export_never_writes_two_masks_in_one_file(tmp_path):
    """(A review.) --keep-names: a volume `brain` writes brain_slice0001.png, and so did a 2D image
    of that name; and `CT` and `ct` are one file on macOS and Windows."""
    from PIL import Image

    from medlabeler.engine.project.export import export_project

    rng = np.random.default_rng(0)
    write_nifti(tmp_path / "images" / "b" / "brain.nii.gz", rng.normal(size=(4, 6, 5)).astype(np.float32))
    for folder, name in (("a", "brain_slice0001.png"), ("c", "CT.png"), ("d", "ct.png")):  # the image first
        (tmp_path / "images" / folder).mkdir()
        Image.fromarray(rng.integers(0, 255, (6, 5), dtype=np.uint8)).save(tmp_path / "images" / folder / name)
    project, _ = create_project(tmp_path / "proj", tmp_path / "images", task="segmentation", names=["a"])
    with project:
        for sample in project.samples():
            if sample.slice_index in (None, 1):
                project.save_label(sample.id, np.ones((6, 5), np.uint8))
        files = export_project(project, tmp_path / "out", fmt="png", keep_names=True)
        volumes = export_project(project, tmp_path / "nifti", fmt="nifti", keep_names=True)
    names = [f.name.lower() for f in files]
    assert len(names) == len(set(names)) == 5 and len(os.listdir(tmp_path / "out")) == 5
    assert len({f.name.lower() for f in volumes}) == len(volumes) == 5  # four sources and labels.json


def test_a_2d_images_nifti_mask_imports_back_and_a_slice_mask_of_an_ambiguous_name_is_refused(tmp_path):
    """(A review.) Our NIfTI export of 2D images (one slice deep) did not import back; and a
    NAME_sliceNNNN.png went to the first of two scans of that name without a word."""
    from PIL import Image

    from medlabeler.engine.project.project_import import import_labels

    (tmp_path / "tiles").mkdir()
    Image.fromarray(np.arange(600, dtype=np.uint8).reshape(30, 20)).save(tmp_path / "tiles" / "tile.png")
    project, _ = create_project(tmp_path / "proj", tmp_path / "tiles", task="segmentation", names=["cell"])
    mask = np.zeros((30, 20), np.uint8)
    mask[3:9, 2:5] = 1
    with project:
        project.save_label(project.samples()[0].id, mask)
    assert main(["export", str(tmp_path / "proj"), "--format", "nifti", "--out", str(tmp_path / "out"),
                 "--keep-names"]) == 0
    with Project.open(tmp_path / "proj") as project:
        project.remove_label(project.samples()[0].id)
        report = import_labels(project, tmp_path / "out")
        assert (report.labeled, report.errors) == (1, [])
        assert np.array_equal(project.load_label(project.samples()[0].id), mask)

    for patient in ("p1", "p2"):
        write_nifti(tmp_path / "scans" / patient / "ct.nii.gz", np.ones((3, 6, 5), np.float32))
    create_project(tmp_path / "two", tmp_path / "scans", task="segmentation", names=["a"])[0].close()
    (tmp_path / "slices").mkdir()
    Image.fromarray(np.ones((6, 5), np.uint8)).save(tmp_path / "slices" / "ct_slice0001.png")
    with Project.open(tmp_path / "two") as project:
        report = import_labels(project, tmp_path / "slices")
        assert report.labeled == 0 and project.status()["labeled"] == 0
        assert "several images in the project have the name it is named after" in str(report.errors[0])


def test_one_damaged_mask_file_leaves_its_label_out_of_the_export_not_every_label(tmp_path, capsys):
    """A torn copy of one mask of six: `export` wrote nothing and exited 2, so the five intact labels
    could not be taken out either."""
    import json

    from medlabeler.cli import main
    from medlabeler.engine.project.export import ExportIncomplete, export_project
    from tests.engine.test_pipeline_datasets import make_seg_project

    project = make_seg_project(tmp_path, n=2, depth=3)
    torn = project.label(project.samples(labeled=True)[0].id)
    (project.root / torn.mask_relpath).write_bytes(b"PK torn")
    for fmt in ("png", "nifti", "csv"):
        with pytest.raises(ExportIncomplete, match="1 label left out of the export, its saved file damaged: .*"
                                                   f"sample {torn.sample_id}, label version 1"):
            export_project(project, tmp_path / fmt, fmt=fmt)
    assert len(list((tmp_path / "png").glob("*.png"))) == 5
    volumes = json.loads((tmp_path / "nifti" / "labels.json").read_text())["volumes"]
    listed = [s["sample"] for v in volumes for s in v["samples"]]
    assert len(listed) == 5 and torn.sample_id not in listed
    assert len((tmp_path / "csv" / "labels.csv").read_text().splitlines()) == 1 + 5
    project.close()
    assert main(["export", str(tmp_path / "project"), "--format", "png", "--out", str(tmp_path / "cli")]) == 1
    out, err = capsys.readouterr()
    assert "exported 5 mask files and labels.json" in out
    assert "damaged" in err and "1 label left out of the export" in err
    assert main(["status", str(tmp_path / "project")]) == 0  # said before an export or a run meets it
    err = capsys.readouterr().err
    assert f"sample {torn.sample_id}, label version 1) is damaged" in err and "1 label whose saved mask file" in err
