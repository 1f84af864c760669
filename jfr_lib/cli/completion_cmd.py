"""``jfr completion bash|zsh``: a shell completion script built from the parser."""

from __future__ import annotations

import argparse

BASH = """\
# jfr completion for bash; install with: jfr completion bash > /etc/bash_completion.d/jfr
_jfr() {{
    local cur words key skip=0
    COMPREPLY=()
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    words=""
    for w in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        if [ $skip = 1 ]; then skip=0; continue; fi
        case "$w" in -p|--project) skip=1; continue ;; -*) continue ;; esac
        words="$words $w"
    done
    key="${{words# }}"
    case "$key" in
{cases}
    esac
}}
complete -F _jfr jfr
"""

ZSH = "#compdef jfr\nautoload -U +X bashcompinit && bashcompinit\n"


def add_arguments(sub) -> None:
    p = sub.add_parser("completion", help="print a shell completion script",
                       description="Print a completion script for bash or zsh, e.g. "
                       "`jfr completion bash > ~/.local/share/bash-completion/completions/jfr`.")  # fmt: skip
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell")
    p.set_defaults(func=run)


def _tree(parser, prefix="") -> dict:
    """command path -> words that may follow it."""
    out = {}
    words = [o for a in parser._actions for o in a.option_strings]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                words.append(name)
                out.update(_tree(child, f"{prefix} {name}".strip()))
    out[prefix] = words
    return out


def script(shell: str) -> str:
    from jfr_lib.cli import build_parser

    tree = _tree(build_parser())
    cases = "\n".join(
        f'        "{path}") COMPREPLY=($(compgen -W "{" ".join(words)}" -- "$cur")) ;;'
        for path, words in sorted(tree.items(), key=lambda kv: -len(kv[0]))
    )
    text = BASH.format(cases=cases)
    return ZSH + text if shell == "zsh" else text


def run(args) -> int:
    print(script(args.shell), end="")
    return 0
