"""The method registry: built-ins, config checking, plugins via entry points, pipelines."""

from importlib.metadata import EntryPoint

import pytest
import torch

from medlabeler.engine import methods
from medlabeler.engine.methods import build_method, list_methods, method_info, pipeline_stages
from medlabeler.engine.training.method import Method

from .test_methods_support import one_thread  # noqa: F401  (autouse fixture)
from .test_methods_support import factory

BUILTINS = ["simclr", "pcl", "gravis", "supervised", "mean-teacher", "fixmatch", "cross-teaching", "srcl"]


def test_all_contract_names_are_registered_with_their_kind():
    assert list_methods()[: len(BUILTINS)] == BUILTINS
    assert set(list_methods(kind="pretrain")) >= {"simclr", "pcl", "gravis"}
    assert set(list_methods(kind="train")) >= {
        "supervised",
        "mean-teacher",
        "fixmatch",
        "cross-teaching",
        "srcl",
    }
    assert "cross-teaching" not in list_methods(task="classification")


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_every_method_builds_and_takes_one_step(name, task):
    if task not in method_info(name)["tasks"]:
        with pytest.raises(ValueError, match="supports tasks"):
            build_method(name, task=task, model_factory=factory(task), num_classes=2, in_channels=1)
        return
    method = build_method(
        name, task=task, model_factory=factory(task), num_classes=2, in_channels=1, config={}
    )
    assert isinstance(method, Method) and method.name == name and method.task == task
    x = torch.randn(4, 1, 16, 16)
    y = torch.randint(0, 2, (4,)) if task == "classification" else torch.randint(0, 2, (4, 16, 16))
    batch = {"u": x, "u_pos": torch.tensor([0.1, 0.15, 0.5, 0.55])}
    if method.uses_labels:
        batch.update(x=x, y=y)
    loss, logs = method.training_step(batch, 0.5)
    loss.backward()
    method.after_optimizer_step(1)
    assert loss.dim() == 0 and torch.isfinite(loss) and isinstance(logs["loss"], float)
    predictor = method.predictor()
    assert hasattr(predictor, "encoder") and set(method.encoder_state()) == set(
        predictor.encoder.state_dict()
    )


def test_unknown_names_and_config_keys_are_refused():
    with pytest.raises(ValueError, match="unknown method"):
        build_method(
            "byol",
            task="classification",
            model_factory=factory("classification"),
            num_classes=2,
            in_channels=1,
        )
    with pytest.raises(ValueError, match="tempreature"):
        build_method(
            "simclr",
            task="classification",
            model_factory=factory("classification"),
            num_classes=2,
            in_channels=1,
            config={"tempreature": 0.2},
        )
    with pytest.raises(ValueError, match="curriculum"):
        build_method(
            "curriculum",
            task="classification",
            model_factory=factory("classification"),
            num_classes=2,
            in_channels=1,
        )


def test_method_info_lists_defaults():
    info = method_info("fixmatch")
    assert info["kind"] == "train" and info["defaults"]["threshold"] is None and "Sohn" in info["doc"]  # per task
    thresholds = {task: build_method("fixmatch", task=task, model_factory=factory(task), num_classes=2, in_channels=1,
                                     config={}).threshold for task in ("classification", "segmentation")}
    assert thresholds == {"classification": 0.95, "segmentation": 0.95}  # segmentation: chosen at 128 px
    assert method_info("srcl")["defaults"]["contrastive_weight"] is None  # per task, chosen on validation
    weights = {task: build_method("srcl", task=task, model_factory=factory(task), num_classes=2, in_channels=1,
                                  config={}).contrastive_weight for task in ("classification", "segmentation")}
    assert weights == {"classification": 1.0, "segmentation": 0.1}
    assert build_method("srcl", task="segmentation", model_factory=factory("segmentation"), num_classes=2,
                        in_channels=1, config={"contrastive_weight": 0.5}).contrastive_weight == 0.5


class EchoMethod(Method):
    name = "echo"
    kind = "train"
    DEFAULTS = {"scale": 1.0}

    def __init__(self, model, *, task, num_classes, scale):
        super().__init__(task)
        self.model = model
        self.scale = scale

    def training_step(self, batch, progress):
        loss = self.model(batch["x"]).mean() * self.scale
        return loss, {"loss": float(loss)}

    def predictor(self):
        return self.model


def test_plugins_come_from_entry_points_and_cannot_replace_builtins(monkeypatch):
    plugin = EntryPoint(name="echo", value=f"{__name__}:EchoMethod", group=methods.ENTRY_POINT_GROUP)
    impostor = EntryPoint(name="simclr", value=f"{__name__}:EchoMethod", group=methods.ENTRY_POINT_GROUP)
    monkeypatch.setattr(
        methods,
        "entry_points",
        lambda group: [plugin, impostor] if group == methods.ENTRY_POINT_GROUP else [],
    )
    with pytest.warns(UserWarning, match="built in"):
        names = list_methods()
    assert "echo" in names
    with pytest.warns(UserWarning):
        method = build_method(
            "echo",
            task="classification",
            model_factory=factory("classification"),
            num_classes=2,
            in_channels=1,
            config={"scale": 2.0},
        )
    assert isinstance(method, EchoMethod) and method.scale == 2.0
    assert methods.method_class("simclr").__name__ == "SimCLR"


def test_srcl_pretrain_then_finetune_pipeline():
    stages = pipeline_stages("srcl-pretrain-finetune")
    assert stages == [("simclr", {}), ("srcl", {"mode": "finetune"})]
    assert pipeline_stages("fixmatch") == [("fixmatch", {})]
    # run it the way the loop would: stage 1 encoder -> stage 2
    first = build_method(
        "simclr", task="classification", model_factory=factory("classification"), num_classes=2, in_channels=1
    )
    second = build_method(
        "srcl",
        task="classification",
        model_factory=factory("classification"),
        num_classes=2,
        in_channels=1,
        config=stages[1][1],
    )
    second.load_encoder_state(first.encoder_state())
    assert second.contrastive_weight == 0.0
    for key, value in first.encoder_state().items():
        assert torch.equal(second.teacher.encoder.state_dict()[key], value)
