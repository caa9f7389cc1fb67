"""Publishing a Query2Label model folder to the Hub (the logic behind `scripts/publish.py`).

1. assemble the repository folder: safetensors weights, config with `auto_map`, processor config, the code files of
   this package's version, and a model card (the variant's template plus the measured results, or the card that
   came with the model);
2. validate it: the card's metadata parses, and the folder loads and runs the image-classification pipeline in a
   Python process where this package cannot be imported;
3. upload it with `huggingface_hub` (`create_repo`, `upload_folder`), unless this is a dry run.
"""

import json
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, get_token

from ..evaluation.report import EvaluationReport
from ..model.configuration_query2label import QUERY2LABEL_AUTO_MAP
from ..saved_models import safetensors_error, unreadable_weights
from .model_card import CardContent, add_comparison, render_card, replace_measured_results, variant_card
from .remote_code_check import check_folder_without_package
from .space import write_space

MODEL_DIR = Path(__file__).parents[1] / "model"
# The modules the auto_map names; what they import is found the way `save_pretrained` finds it.
ENTRY_FILES = ("configuration_query2label.py", "modeling_query2label.py", "image_processing_query2label.py")


def code_files() -> list[Path]:
    """The code files a Hub repository needs: the auto_map modules and their relative imports."""
    from transformers.dynamic_module_utils import get_relative_import_files

    files = {MODEL_DIR / name for name in ENTRY_FILES}
    for name in ENTRY_FILES:
        files.update(Path(path) for path in get_relative_import_files(str(MODEL_DIR / name)))
    return sorted(files)


class PublishError(ValueError):
    """A model folder, report or card that cannot be published as it is."""


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise PublishError(f"{what} not found: {path}.") from error
    except json.JSONDecodeError as error:
        raise PublishError(f"{what} at {path} is not valid JSON: {error}.") from error


def _weight_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("model*.safetensors")) + sorted(model_dir.glob("model.safetensors.index.json"))
    if not files:
        legacy = [p.name for p in model_dir.glob("*.bin")]
        hint = f" (found {legacy}: load and save_pretrained it again to get safetensors)" if legacy else ""
        raise PublishError(f"No safetensors weights in {model_dir}{hint}.")
    for path in files:  # a file cut short by an interrupted save or copy fails here, before anything is written
        error = safetensors_error(path) if path.suffix == ".safetensors" else None
        if error:
            raise unreadable_weights(model_dir, f"{path.name}: {error}")
    return files


def _read_report(path: Path, what: str) -> EvaluationReport:
    try:
        return EvaluationReport.from_json(_read_json(path, what))
    except (ValueError, TypeError) as error:
        raise PublishError(f"{what} in {path} is {error}: pass the eval_results.json of scripts/evaluate_model.py or scripts/train.py.") from None


def check_report_labels(report: EvaluationReport, config: dict) -> None:
    """The report must be about this model's labels, in any order."""
    reported = [row.label for row in report.per_label]
    model_labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    if sorted(reported) != sorted(model_labels):
        raise PublishError(
            f"The evaluation results are for labels {sorted(reported)[:8]}... but the model predicts "
            f"{sorted(model_labels)[:8]}...: evaluate this model with scripts/evaluate_model.py."
        )


def build_card(args, model_dir: Path, config: dict, report: EvaluationReport | None) -> ModelCard:
    measured_on = args.measured_on or (report.dataset if report else None)
    if report is not None and measured_on:
        measured_on = f"{measured_on} ({report.eval_split or 'evaluation'} split)"
    if args.variant is not None:
        return variant_card(args.variant, args.repo_id, report, measured_on, report.dataset if report else None)
    existing = model_dir / "README.md"
    if existing.is_file():
        text = existing.read_text(encoding="utf-8").replace("ORG/MODEL", args.repo_id)
        try:
            card = ModelCard(text)
        except Exception as error:  # YAML or metadata errors, in huggingface_hub's words
            raise PublishError(f"The model card {existing} does not parse: {error}.") from error
        if report is not None:  # the card of the training run, with the results of scripts/evaluate_model.py
            card = replace_measured_results(card, report, measured_on)
        return card
    labels = ", ".join(config["id2label"][str(i)] for i in range(len(config["id2label"])))
    content = CardContent(
        model_name=args.repo_id.split("/")[-1],
        repo_id=args.repo_id,
        summary=f"A Query2Label multi-label image classifier over {len(config['id2label'])} labels ({labels}).",
        architecture=f"Backbone `{config.get('backbone') or config.get('backbone_config', {}).get('model_type')}` at "
        f"{config.get('image_size')} px with a Query2Label head of hidden size {config.get('hidden_size')}.",
        training="See the training run that produced this folder.",
        limitations="Scores are independent per label; choose thresholds on held-out data of your domain.",
        measured=report,
        measured_on=measured_on,
        measured_dataset_id=report.dataset if report else None,
    )
    return render_card(content)


def validate_card(card_path: Path) -> ModelCard:
    try:
        card = ModelCard.load(card_path)
    except Exception as error:
        raise PublishError(f"The model card {card_path} does not parse: {error}.") from error
    data = card.data
    problems = []
    if data.pipeline_tag != "image-classification":
        problems.append("pipeline_tag must be image-classification")
    if "custom_code" not in (data.tags or []):
        problems.append("tags must include custom_code")
    if problems:
        raise PublishError(f"The model card {card_path} is incomplete: {'; '.join(problems)}.")
    return card


def assemble_repository(args, output_dir: Path) -> Path:
    """Write the repository folder for `args.model` into `output_dir` and validate it."""
    model_dir = Path(args.model)
    if not model_dir.is_dir():
        raise PublishError(f"No model folder at {model_dir}.")
    config = _read_json(model_dir / "config.json", "The model config")
    if config.get("model_type") != "query2label":
        raise PublishError(f"{model_dir} holds a {config.get('model_type')!r} model, not a Query2Label one.")
    weights = _weight_files(model_dir)
    processor_file = model_dir / "preprocessor_config.json"
    if not processor_file.is_file():
        raise PublishError(f"{model_dir} has no preprocessor_config.json: save the image processor next to the model.")
    report = _read_report(Path(args.eval_results), "The evaluation results") if args.eval_results else None
    if report is not None:
        check_report_labels(report, config)

    output_dir.mkdir(parents=True, exist_ok=True)
    for path in weights:
        shutil.copy2(path, output_dir / path.name)
    head_class = config.get("auto_map", {}).get("AutoModelForImageClassification")
    config["auto_map"] = {**QUERY2LABEL_AUTO_MAP, **({"AutoModelForImageClassification": head_class} if head_class else {})}
    (output_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    processor = _read_json(processor_file, "The processor config")
    processor["auto_map"] = {"AutoImageProcessor": QUERY2LABEL_AUTO_MAP["AutoImageProcessor"]}
    (output_dir / "preprocessor_config.json").write_text(json.dumps(processor, indent=2, sort_keys=True) + "\n")
    for path in code_files():
        shutil.copy2(path, output_dir / path.name)
    if args.onnx:
        from ..export.onnx import export_saved_model

        export_saved_model(model_dir, output_dir / "model.onnx")
    if (model_dir / "figures").is_dir():  # the training run's plots, which its card shows
        shutil.copytree(model_dir / "figures", output_dir / "figures", dirs_exist_ok=True)
    if report is not None:
        (output_dir / "eval_results.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")

    card = build_card(args, model_dir, config, report)
    if args.baseline_results:
        own = report or _read_report(model_dir / "eval_results.json", "The model's own results (for --baseline_results)")
        card = add_comparison(card, own, _read_report(Path(args.baseline_results), "The baseline results"), args.baseline_name)
    card.save(output_dir / "README.md")
    validate_card(output_dir / "README.md")
    check_loads_without_package(output_dir, "The assembled folder")
    return output_dir


def check_loads_without_package(folder: Path, what: str = "The model folder") -> None:
    """A folder about to go to the Hub must load in a Python process without this package (remote code only);
    otherwise one line with the reason the subprocess gave."""
    try:
        check_folder_without_package(folder)
    except RuntimeError as error:  # the subprocess's traceback ends in the reason
        reason = [line for line in str(error).splitlines() if line.strip()][-1]
        raise PublishError(f"{what} {folder} does not load in a Python process without this package: {reason}") from None


# Never pushed: training checkpoints and logs, and the pickled training arguments (they may hold a token).
HUB_IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "runs/**", "training_args.bin", "_*"]


def hub_token(token: str | None = None) -> str:
    """The token to push with: the one given, else the logged-in one; a clear error before any work without one."""
    token = token or get_token()
    if token is None:
        raise PublishError(
            "No Hub token: run `hf auth login`, set HF_TOKEN or pass a token (--hub_token for train.py); publish.py "
            "--dry_run DIR only writes the folder."
        )
    return token


def push_folder(
    folder: Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload Query2Label model",
    token: str | None = None,
    api: HfApi | None = None,
    repo_type: str = "model",
) -> str:
    """Upload a finished model (or Space) folder to `repo_id` in exactly one commit (the repository is created if missing);
    returns the repo URL. `upload_folder` may split large folders into several commits, hence `create_commit`."""
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.utils import filter_repo_objects

    folder = Path(folder)
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name))
        for name in filter_repo_objects(files, ignore_patterns=HUB_IGNORE_PATTERNS)
    ]
    api = api or HfApi(token=hub_token(token))
    space_sdk = {"space_sdk": "gradio"} if repo_type == "space" else {}
    url = api.create_repo(repo_id, private=private, repo_type=repo_type, exist_ok=True, **space_sdk)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type=repo_type)
    api.create_commit(repo_id, operations=operations, commit_message=commit_message, revision=revision, repo_type=repo_type)
    return str(url)


def upload(args, folder: Path, api: HfApi | None = None) -> str:
    return push_folder(folder, args.repo_id, args.private, args.revision, args.commit_message, api=api)


def publish(args) -> str:
    """Dry run: write and validate the folder, return its path. Otherwise also upload, return the repo URL."""
    if args.variant is not None:
        from ..zoo.variants import get_variant

        get_variant(args.variant)  # fail before any work on an unknown name
    if args.space is not None and args.space.count("/") != 1:
        raise PublishError(f"--space takes the Space's repo id as ORG/NAME, got {args.space!r}.")
    if args.dry_run:
        folder = assemble_repository(args, Path(args.dry_run))
        if args.space:
            write_space(args.repo_id, folder.with_name(folder.name + "-space"))
        return str(folder)
    with tempfile.TemporaryDirectory() as staging:
        folder = assemble_repository(args, Path(staging) / "repo")
        url = upload(args, folder)
        if args.space:
            space = write_space(args.repo_id, Path(staging) / "space")
            url += " and " + push_folder(space, args.space, args.private, commit_message="Gradio demo", repo_type="space")
        return url
