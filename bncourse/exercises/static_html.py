"""The website rendering: each question as self-contained HTML with inline CSS and JavaScript.

No external library and no kernel: multiple-choice and numeric answers are checked in the browser. Every
feedback message is produced by the Python grading code (``message_parts``), rendered to escaped HTML here
and hidden; the script only decides which parts to show and echoes the learner's input with ``textContent``.
Math in any text becomes ``<span class="math">\\(...\\)</span>``, which the page's MathJax typesets.
Code exercises show the task, hints and a collapsible solution, and how to check code live. Typed numbers are
read by ``numeric_answer``'s JavaScript, the same grammar as the Python grader's.

The last answer checked is kept in the browser's ``localStorage``, per page (key ``bncourse-progress:<path>``,
one entry per question id), and shown again on the next visit; the landing page counts the questions answered
right. Nothing is sent anywhere. Colours come from the website theme's CSS variables (light and dark), with
light fallbacks elsewhere.
"""
from __future__ import annotations

import html
import itertools
import json

from . import markup, renderers
from .code_exercise import CodeExercise
from .question import Question
from . import numeric_answer
from .quiz import SLOT_FOUND, SLOT_REST, SLOT_VALUE, MultipleChoice, Numeric

_counter = itertools.count(1)

CSS = """
.bnc-quiz{border:1px solid var(--pst-color-border,#c9d3dd);border-left:4px solid var(--pst-color-primary,#2b6cb0);
  border-radius:6px;padding:.8em 1em;margin:1em 0;background:var(--pst-color-surface,#f7f9fc);
  color:var(--pst-color-text-base,#222)}
.bnc-quiz .bnc-title{font-weight:600;margin-bottom:.4em}
.bnc-quiz .bnc-options{margin:.5em 0}
.bnc-quiz .bnc-options label{display:block;margin:.25em 0;cursor:pointer}
.bnc-quiz .bnc-options input{margin-right:.5em;accent-color:var(--pst-color-primary,#2b6cb0)}
.bnc-quiz button{margin:.3em .5em .3em 0;padding:.2em .9em;border:1px solid var(--pst-color-primary,#2b6cb0);
  border-radius:4px;background:var(--pst-color-background,#fff);color:var(--pst-color-text-base,#222);cursor:pointer}
.bnc-quiz button.bnc-check{background:var(--pst-color-primary,#2b6cb0);color:var(--pst-color-primary-text,#fff)}
.bnc-quiz button:focus-visible,.bnc-quiz input:focus-visible,.bnc-quiz summary:focus-visible{
  outline:3px solid var(--pst-color-accent,#c2410c);outline-offset:2px}
.bnc-quiz .bnc-feedback{margin-top:.4em;padding:.4em .6em;border-radius:4px}
.bnc-quiz .bnc-feedback.bnc-ok{background:var(--pst-color-success-bg,#e6f4ea);border:1px solid var(--pst-color-success,#4c9a5f)}
.bnc-quiz .bnc-feedback.bnc-bad{background:var(--pst-color-danger-bg,#fdecea);border:1px solid var(--pst-color-danger,#c0504d)}
.bnc-quiz .bnc-hint{margin-top:.4em;padding:.4em .6em;background:var(--pst-color-warning-bg,#fff8e1);border-radius:4px}
.bnc-quiz input.bnc-number{width:12em;padding:.15em .3em;color:inherit;background:var(--pst-color-background,#fff);
  border:1px solid var(--pst-color-border,#8a97a5);border-radius:3px}
.bnc-quiz details{margin:.4em 0}
.bnc-quiz pre{overflow-x:auto}
"""

# One function per page, defined by the first quiz; every quiz calls it with its own root element.
JS = r"""
(function(root){
if(!window.bncourseQuiz){""" + numeric_answer.JS + r"""window.bncourseQuiz=function(root){
  var data=JSON.parse(root.querySelector('script.bnc-data').textContent);
  var fb=root.querySelector('.bnc-feedback');
  function show(keys,ok,slots){
    var msgs=fb.querySelectorAll('[data-bnc-msg]');
    for(var i=0;i<msgs.length;i++){msgs[i].hidden=keys.indexOf(msgs[i].getAttribute('data-bnc-msg'))<0;}
    var s=fb.querySelectorAll('[data-bnc-slot]');
    for(var j=0;j<s.length;j++){var k=s[j].getAttribute('data-bnc-slot');if(slots&&k in slots){s[j].textContent=slots[k];}}
    fb.hidden=false;fb.className='bnc-feedback '+(ok?'bnc-ok':'bnc-bad');
    fb.setAttribute('data-bnc-result',ok?'right':'wrong');
  }
  function withHint(keys){if(data.hint){keys.push('hint');}return keys;}
  function check(){
    if(data.kind==='mc'){
      var boxes=root.querySelectorAll('.bnc-options input'),picked=[];
      for(var i=0;i<boxes.length;i++){if(boxes[i].checked){picked.push(parseInt(boxes[i].value,10));}}
      if(!picked.length){show(['none'],false);return;}
      if(!data.multi){var p=picked[0];show(['opt-'+p],data.correct.indexOf(p)>=0);return;}
      var keys=[],found=0;
      for(var q=0;q<picked.length;q++){if(data.correct.indexOf(picked[q])>=0){found++;}else{keys.push('wrong-'+picked[q]);}}
      if(!keys.length&&found===data.correct.length){show(['right'],true);return;}
      if(found<data.correct.length){keys.push('missing');}
      show(withHint(keys),false,{found:String(found)});return;
    }
    if(data.kind==='numeric'){
      var p=bncourseParseAnswer(root.querySelector('input.bnc-number').value,data.units,data.grammar);
      if(p[0]==='empty'){show(['empty'],false);return;}
      if(p[0]==='nan'){show(withHint(['nan']),false,{value:p[1]});return;}
      if(p[0]==='unit'){show(withHint(['unit']),false,{rest:p[1]});return;}
      if(Math.abs(p[1]-data.answer)<=data.slack){show(['right'],true,{value:p[2]});return;}
      show(withHint([p[1]>data.answer?'high':'low']),false,{value:p[2]});
    }
  }
  // the last answer to each question, kept per page in this browser only (the landing page counts them)
  var key='bncourse-progress:'+window.location.pathname,qid=root.getAttribute('data-bnc-id');
  function load(){try{return JSON.parse(window.localStorage.getItem(key)||'{}')||{};}catch(e){return {};}}
  function answer(){
    if(data.kind==='numeric'){return root.querySelector('input.bnc-number').value;}
    var boxes=root.querySelectorAll('.bnc-options input'),picked=[];
    for(var i=0;i<boxes.length;i++){if(boxes[i].checked){picked.push(boxes[i].value);}}
    return picked;
  }
  function checkAndSave(){
    check();
    try{var all=load();all[qid]={result:fb.getAttribute('data-bnc-result'),answer:answer()};
      window.localStorage.setItem(key,JSON.stringify(all));}catch(e){}
  }
  var c=root.querySelector('button.bnc-check');if(c){c.addEventListener('click',checkAndSave);}
  var n=root.querySelector('input.bnc-number');
  if(n){n.addEventListener('keydown',function(e){if(e.key==='Enter'){e.preventDefault();checkAndSave();}});}
  var before=c&&load()[qid];
  if(before){
    if(data.kind==='numeric'){n.value=String(before.answer);}
    else{var opts=root.querySelectorAll('.bnc-options input');
      for(var o=0;o<opts.length;o++){opts[o].checked=before.answer.indexOf(opts[o].value)>=0;}}
    check();
  }
  var h=root.querySelector('button.bnc-hint-btn');
  if(h){h.addEventListener('click',function(){var d=root.querySelector('.bnc-hint');d.hidden=!d.hidden;});}
  if(!data.multi&&data.kind==='mc'){
    var radios=root.querySelectorAll('.bnc-options input');
    for(var r=0;r<radios.length;r++){radios[r].addEventListener('change',function(){fb.hidden=true;});}
  }
};}
window.bncourseQuiz(root);
})(document.currentScript.parentNode);
"""


def _json(data: object) -> str:
    """JSON safe inside a <script> element (no ``</script>``, no HTML comment openers)."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _slots_html(text: str) -> str:
    """Render a message template: markup to escaped HTML, slots to empty spans the script fills."""
    out = markup.to_html(text)
    for name, token in (("value", SLOT_VALUE), ("rest", SLOT_REST), ("found", SLOT_FOUND)):
        out = out.replace(html.escape(token), f'<span data-bnc-slot="{name}"></span>')
    return out


def _messages(parts: dict[str, str]) -> str:
    return "".join(f'<span data-bnc-msg="{html.escape(k)}" hidden>{_slots_html(v)} </span>'
                   for k, v in parts.items() if v)


def _frame(q: Question, kind: str, title: str, body: str, data: dict | None) -> str:
    dom_id = f"bnc-{q.id}-{next(_counter)}"
    script = (f'<script type="application/json" class="bnc-data">{_json(data)}</script><script>{JS}</script>'
              if data is not None else "")
    return (f'<div class="bnc-quiz bnc-{kind}" id="{html.escape(dom_id)}" data-bnc-id="{html.escape(q.id)}">'
            f"<style>{CSS}</style>"
            f'<div class="bnc-title">{html.escape(title)}</div>'
            f'<div class="bnc-prompt">{markup.to_html(q.prompt)}</div>{body}{script}</div>')


def _buttons(q: Question) -> str:
    hint = (f'<button type="button" class="bnc-hint-btn">Hint</button>'
            f'<div class="bnc-hint" hidden>{markup.to_html(q.hint)}</div>') if q.hint else ""
    return f'<div><button type="button" class="bnc-check">Check</button>{hint}</div>'


def _spoken_name(text: str) -> str:
    """An ``aria-label`` for an option that holds math (empty when it holds none).

    Typeset math is exposed to assistive technology as MathML, which does not give a form control a name:
    an option made of math only would be an unnamed radio button or checkbox. The label is the text with the
    TeX source of the math, its backslashes dropped (``$\\gamma$`` reads "gamma").
    """
    segments = markup.parse(text)
    if not any(kind in ("math", "displaymath") for kind, _ in segments):
        return ""
    words = [body.replace("\\", "") if kind in ("math", "displaymath") else body
             for kind, body in segments if kind not in ("open", "close")]
    return f' aria-label="{html.escape(" ".join("".join(words).split()), quote=True)}"'


@renderers.static(MultipleChoice)
def render_multiple_choice(q: MultipleChoice) -> str:
    kind = "checkbox" if q.multi else "radio"
    group = f"bnc-{q.id}-{next(_counter)}"
    options = "".join(
        f'<label><input type="{kind}" name="{html.escape(group)}" value="{i}"{_spoken_name(opt)}>'
        f'{markup.to_html(opt)}</label>'
        for i, opt in enumerate(q.options))
    body = (f'<div class="bnc-options" role="group">{options}</div>{_buttons(q)}'
            f'<div class="bnc-feedback" aria-live="polite" hidden>{_messages(q.message_parts())}</div>')
    title = "Self-check (several answers may be right)" if q.multi else "Self-check"
    data = {"kind": "mc", "multi": q.multi, "correct": sorted(q.correct), "hint": bool(q.hint)}
    return _frame(q, "mc", title, body, data)


@renderers.static(Numeric)
def render_numeric(q: Numeric) -> str:
    units = f" {markup.to_html(q.units)}" if q.units else ""
    body = (f'<div class="bnc-options"><input type="text" class="bnc-number" inputmode="decimal" '
            f'aria-label="your answer" autocomplete="off">{units}</div>{_buttons(q)}'
            f'<div class="bnc-feedback" aria-live="polite" hidden>{_messages(q.message_parts())}</div>')
    data = {"kind": "numeric", "answer": q.answer, "slack": q.slack, "units": q.units,
            "grammar": numeric_answer.js_grammar(), "hint": bool(q.hint)}
    return _frame(q, "numeric", "Self-check", body, data)


@renderers.static(CodeExercise)
def render_code(ex: CodeExercise) -> str:
    hints = "".join(f"<details><summary>Hint {i + 1}</summary>{markup.to_html(h)}</details>"
                    for i, h in enumerate(ex.hints))
    solution = (f"<details><summary>Solution</summary><pre><code>{html.escape(ex.solution)}</code></pre></details>"
                if ex.solution else "")
    labels = ", ".join(html.escape(c.label) for c in ex.cases)
    live = (f'<p class="bnc-live">To check your own code, open this page as a notebook (the launch buttons at '
            f'the top, or <code>jupyter lab book/</code> after <code>make setup</code>), define '
            f'<code>{html.escape(ex.function_name)}</code> and press <em>Check</em>: it is run against the reference '
            f'on {len(ex.cases)} cases ({labels}).</p>')
    return _frame(ex, "code", f"Code exercise: write {ex.function_name}()", hints + solution + live, None)


def render(q: Question) -> str:
    """Static HTML of any question (the function registered for its class)."""
    return renderers.lookup(renderers.STATIC, q, "static")(q)
