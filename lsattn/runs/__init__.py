"""Run machinery: what makes a run safe to start, stop, resume and share.

Files written whole (`atomic`), one writer per run folder (`run_lock`),
signals (`interrupts`), the run folder's config (`run_folder`), checkpoints
(`checkpoint`), the layer choice logged in training (`choice_dynamics`),
devices and processes (`parallel`), and how the steps compile
(`compilation`), and whether a run fits the memory it has (`memory`). Nothing
here knows the recurrent core or trains anything.
"""
