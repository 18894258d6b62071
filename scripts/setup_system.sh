#!/usr/bin/env bash
# System packages the course uses, from Debian's archive:
#   dataset-fashion-mnist  Fashion-MNIST as IDX files in /usr/share/datasets/fashion-mnist
#   chromium               the headless browser the site test drives
#   npm                    fetches the website's JavaScript assets once (scripts/vendor_assets.py)
# and, with BNCOURSE_PDF=1 (make pdf), what the PDF of the book needs:
#   texlive-xetex texlive-latex-extra texlive-fonts-recommended lmodern latexmk   XeLaTeX and Sphinx's LaTeX packages
#   texlive-lang-cjk fonts-noto-cjk                                             xeCJK and a font for the Korean glossary
# With apt-get (Debian, Ubuntu; as root or through sudo) it installs what is missing. Without apt (macOS...) it
# says in one line what is missing and what still works, and carries on.
set -uo pipefail
need=()
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ "${BNCOURSE_PDF:-0}" = "1" ]; then
  command -v xelatex >/dev/null 2>&1 || need+=(texlive-xetex texlive-latex-extra texlive-fonts-recommended lmodern)
  command -v latexmk >/dev/null 2>&1 || need+=(latexmk)
  kpsewhich xeCJK.sty >/dev/null 2>&1 || need+=(texlive-lang-cjk)
  fc-list 2>/dev/null | grep -q "Noto Serif CJK" || need+=(fonts-noto-cjk)
fi
[ ${#need[@]} -eq 0 ] && { echo "system packages: all present"; exit 0; }
if ! command -v apt-get >/dev/null 2>&1; then
  works="notebooks and unit tests work (Fashion-MNIST is downloaded once on first use)"
  case " ${need[*]} " in *" npm "*) works="$works; make book needs npm (install Node.js)";; esac
  case " ${need[*]} " in *" chromium "*) works="$works; the browser test needs Chromium";; esac
  echo "system packages: no apt-get here; missing: ${need[*]}; $works"; exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "system packages: missing ${need[*]}, and installing them needs root (no sudo)" >&2; exit 1; }
  SUDO="sudo"
fi
echo "system packages: installing ${need[*]}"
$SUDO apt-get update -qq || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || { echo "system packages: apt-get install failed for ${need[*]}" >&2; exit 1; }
