"""The website rendering: each question as self-contained HTML with inline CSS and JavaScript.

No external library and no kernel: multiple-choice and numeric answers are checked in the browser. Every
feedback message is produced by the Python grading code (``message_parts``), rendered to escaped HTML here
and hidden; the script only decides which parts to show and echoes the learner's input with ``textContent``.
Math in any text becomes ``<span class="math">\\(...\\)</span>``, which the page's MathJax typesets.
Code exercises show the task, hints and a collapsible solution, and how to check code live.
"""
from __future__ import annotations

import html
import itertools
import json

from . import markup
from .code_exercise import CodeExercise
from .question import Question
from .quiz import NUMBER_RE, SLOT_FOUND, UNIT_START_RE, SLOT_REST, SLOT_VALUE, MultipleChoice, Numeric

_counter = itertools.count(1)

CSS = """
.bnc-quiz{border:1px solid #c9d3dd;border-left:4px solid #2b6cb0;border-radius:6px;padding:.8em 1em;margin:1em 0;
  background:rgba(43,108,176,.04)}
.bnc-quiz .bnc-title{font-weight:600;margin-bottom:.4em}
.bnc-quiz .bnc-options{margin:.5em 0}
.bnc-quiz .bnc-options label{display:block;margin:.25em 0;cursor:pointer}
.bnc-quiz .bnc-options input{margin-right:.5em}
.bnc-quiz button{margin:.3em .5em .3em 0;padding:.2em .9em;border:1px solid #2b6cb0;border-radius:4px;
  background:#fff;color:#2b6cb0;cursor:pointer}
.bnc-quiz button.bnc-check{background:#2b6cb0;color:#fff}
.bnc-quiz .bnc-feedback{margin-top:.4em;padding:.4em .6em;border-radius:4px}
.bnc-quiz .bnc-feedback.bnc-ok{background:#e6f4ea;border:1px solid #4c9a5f}
.bnc-quiz .bnc-feedback.bnc-bad{background:#fdecea;border:1px solid #c0504d}
.bnc-quiz .bnc-hint{margin-top:.4em;padding:.4em .6em;background:#fff8e1;border-radius:4px}
.bnc-quiz input.bnc-number{width:12em;padding:.15em .3em}
.bnc-quiz details{margin:.4em 0}
.bnc-quiz pre{overflow-x:auto}
"""

# One function per page, defined by the first quiz; every quiz calls it with its own root element.
JS = r"""
(function(root){
if(!window.bncourseQuiz){window.bncourseQuiz=function(root){
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
      var raw=root.querySelector('input.bnc-number').value.trim();
      if(!raw){show(['empty'],false);return;}
      var m=new RegExp('^('+data.num+')(?:\\s*/\\s*('+data.num+'))?\\s*([\\s\\S]*)$').exec(raw);
      if(!m){show(withHint(['nan']),false,{value:raw});return;}
      var rest=m[3].trim();
      if(rest&&rest!==(data.units||null)){
        if(data.units&&new RegExp(data.unit_start).test(rest)){show(withHint(['unit']),false,{rest:rest});}
        else{show(withHint(['nan']),false,{value:raw});}
        return;
      }
      var v=parseFloat(m[1]);
      if(m[2]!==undefined){var d=parseFloat(m[2]);if(d===0){show(withHint(['nan']),false,{value:raw});return;}v=v/d;}
      if(!isFinite(v)){show(withHint(['nan']),false,{value:raw});return;}
      if(Math.abs(v-data.answer)<=data.slack){show(['right'],true,{value:raw});return;}
      show(withHint([v>data.answer?'high':'low']),false,{value:raw});
    }
  }
  var c=root.querySelector('button.bnc-check');if(c){c.addEventListener('click',check);}
  var n=root.querySelector('input.bnc-number');
  if(n){n.addEventListener('keydown',function(e){if(e.key==='Enter'){e.preventDefault();check();}});}
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


def render_multiple_choice(q: MultipleChoice) -> str:
    kind = "checkbox" if q.multi else "radio"
    group = f"bnc-{q.id}-{next(_counter)}"
    options = "".join(
        f'<label><input type="{kind}" name="{html.escape(group)}" value="{i}">{markup.to_html(opt)}</label>'
        for i, opt in enumerate(q.options))
    body = (f'<div class="bnc-options" role="group">{options}</div>{_buttons(q)}'
            f'<div class="bnc-feedback" aria-live="polite" hidden>{_messages(q.message_parts())}</div>')
    title = "Self-check (several answers may be right)" if q.multi else "Self-check"
    data = {"kind": "mc", "multi": q.multi, "correct": sorted(q.correct), "hint": bool(q.hint)}
    return _frame(q, "mc", title, body, data)


def render_numeric(q: Numeric) -> str:
    units = f" {markup.to_html(q.units)}" if q.units else ""
    body = (f'<div class="bnc-options"><input type="text" class="bnc-number" inputmode="decimal" '
            f'aria-label="your answer" autocomplete="off">{units}</div>{_buttons(q)}'
            f'<div class="bnc-feedback" aria-live="polite" hidden>{_messages(q.message_parts())}</div>')
    data = {"kind": "numeric", "answer": q.answer, "slack": q.slack, "units": q.units,
            "num": NUMBER_RE, "unit_start": UNIT_START_RE,
            "hint": bool(q.hint)}
    return _frame(q, "numeric", "Self-check", body, data)


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
    """Static HTML of any question."""
    if isinstance(q, MultipleChoice):
        return render_multiple_choice(q)
    if isinstance(q, Numeric):
        return render_numeric(q)
    if isinstance(q, CodeExercise):
        return render_code(q)
    raise TypeError(f"no static rendering for {type(q).__name__}")
