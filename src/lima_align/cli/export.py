"""``lima-align export``: a release folder from a checkpoint (:mod:`lima_align.export.release`), optionally a GGUF
file with an Ollama Modelfile, and a push to the Hugging Face Hub (:mod:`lima_align.export.hub`)."""

from __future__ import annotations

import argparse

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")


def register(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser(
        "export", help="a shareable release folder (safetensors, tokenizer, stop at EOT, model card) from a checkpoint",
        description="Write a folder that plain transformers, vLLM and TGI load as it is: safetensors weights (LoRA "
                    "merged unless --adapter), the tokenizer with the chat template it was trained with, a "
                    "generation_config.json that stops at EOT, and a README.md model card (Table 1 of the data, "
                    "licences, the recipe and where it differs from the paper, the released epoch, the "
                    "evaluation with --report).")
    exp.add_argument("checkpoint", help="a checkpoint-N folder, or a run folder (its last complete checkpoint, or "
                                        "the one --select chose)")
    exp.add_argument("--out", required=True, help="the release folder to write")
    exp.add_argument("--adapter", action="store_true", help="keep a LoRA checkpoint as an adapter (default: merge)")
    exp.add_argument("--merge-lora", action="store_true", help="merge a LoRA checkpoint into its base (the default)")
    exp.add_argument("--select", help="select.json of `lima-align select`: the checkpoint it chose, and why, in the card")
    exp.add_argument("--report", help="a `lima-align report` folder: its headline numbers go in the card")
    exp.add_argument("--gguf", choices=GGUF_TYPES, help="also write a GGUF file of this type and an Ollama Modelfile")
    exp.add_argument("--name", help="the model's name in the card (default: the --out folder's name)")
    exp.add_argument("--push-to-hub", metavar="REPO", help="upload the folder to this Hub repository (owner/name)")
    exp.add_argument("--private", action="store_true", help="create the Hub repository as private")
    exp.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    exp.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from lima_align.errors import LimaError
    from lima_align.export.release import ExportOptions, export_checkpoint

    if args.adapter and args.merge_lora:
        raise LimaError("--adapter and --merge-lora contradict each other")
    options = ExportOptions(adapter=args.adapter, select=args.select, report=args.report, gguf=args.gguf,
                            name=args.name, overwrite=args.overwrite)
    folder = export_checkpoint(args.checkpoint, args.out, options)
    if args.push_to_hub:
        from lima_align.export.hub import push_folder

        print(f"pushed to {push_folder(folder, args.push_to_hub, private=args.private)}")
    return 0
