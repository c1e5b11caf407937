"""The ink of a decoded image, bright on black, whatever its polarity, lighting and paper: the paper's level is
taken off, the rules of lined or squared paper and soft shading are dropped."""

import dataclasses
import functools

import numpy as np
from PIL import ExifTags, Image, ImageOps, TiffImagePlugin, UnidentifiedImageError, WebPImagePlugin  # noqa: F401
from scipy import ndimage

from digits.i18n.message import N_
from digits.imaging.decode import OPAQUE, luminance
from digits.imaging.errors import NoDigitFound

MIN_CONTRAST = 0.12  # ink must differ from the background by this much of the full range
BLANK = N_("no digit found: the image is blank or nearly uniform; write a digit in dark ink on light paper")
INK_PIXELS = 16  # ink is what at least this many pixels reach
INK_THRESHOLD = 0.2  # after contrast normalization, fainter pixels are paper texture or shading, not ink
# Rules of lined or squared paper (_without_rules): at least RULE_LINES thin straight lines, each across
# RULE_LENGTH of the frame or more, and more than RULE_APART times as long as they lie apart (a number of 1s in
# a thin pen is three parallel lines too, but they lie as far apart as they are long). The sheet need not fill
# the frame: lined notes on a desk under a vignette were read right, unflagged, 54 times in 100 (training
# digits) when rules had to reach across 80% of it, and 92 now. A rule is thin: RULE_ROWS + 1 rows away from
# it, its count is under half.
RULE_LINES, RULE_LENGTH, RULE_APART, RULE_ROWS = 3, 0.25, 3, 2
# The rows beside a rule are its own as far as they hold RULE_FLANK of its count: at a half, pieces of blurred
# rules stayed as ink beside the digits (500 training digits a condition: photos drawn anyhow 94.2% read right
# against 95.2%, squared paper under a vignette 97.0% against 97.2%); at a quarter, rules took a digit's pixels.
RULE_FLANK = 0.4
# A stroke that crossed a rule crosses it still. Graphite is no darker than a printed rule beneath it, so its
# pixels on the rule went with the rule, and its strokes were cut into pieces: `python bench/held_out.py --pencil`
# (200 training digits), beside a notebook's margin 3.5% "several digits", a 2, a 7 and a 5 in pieces side by
# side. The pixels of ink that went with a rule are ink again where the ink kept lies within BRIDGE rows both above
# and below (a rule and its flanks are up to 2 RULE_ROWS + 1 rows wide): the margin 0.5% "several digits", 12.0%
# flagged rather than 14.0%, a 6 whose loop closed read as an 8, unsure (86.5% read right rather than 87.0%);
# every other scene in pencil the same, in pen a box 2.0% flagged rather than 2.5%. 500 training digits a
# realism condition (`python bench/realism.py --split train --seed 3`): squared paper under a soft or hard shadow
# 0.2 points more read right and fewer flagged, the photo drawn anyhow fewer flagged and 0.2% "several digits"
# rather than 0.4%, the rest and 1,600 numbers of training digits the same. Only once the marks are judged: put
# back before, they joined the pieces of a desk's stripes that the rules' lines, running on beyond the sheet, had
# cut, and three digits on a desk were lost to them. Only what was ink: with every pixel of a rule's line put
# back, a grid of 64,000 dots, each row of it taken for a rule, was joined into lines and read as a digit
# (bench/hostile_files.py).
BRIDGE = 2 * RULE_ROWS + 2
# Fewer than RULE_LINES rules are still rules where each reaches across LONE of the frame and is FAINT beside the
# strongest ink: on a tilted, blurred photo most of a sheet's rules fall under the ink threshold, and one or two
# left above it ran through the digit and widened its crop (photos drawn anyhow, 500 training digits: 96.4% read
# right rather than 95.6%, flagged 3.4% rather than 4.2%; the desk rows 0.2-0.8 points up; squared paper in a dim
# room lost one digit of 500). A 1 in a fine pen across a tight crop is as long and thin, but the strongest ink.
# Across 0.4 of the frame rather than 0.6: a small note's rules are no longer than the note is wide, and a small
# digit among them was "not a digit", its crop widened by them. 500 training digits a condition (`python
# bench/realism.py --split train --seed 3`): the photo drawn anyhow 97.2% read right rather than 97.0%, "not a
# digit" 2.2% rather than 2.6%; the desk rows flagged 0.2-0.4 points less; every other row the same, and 300
# numbers of training digits a style. FAINT at 0.65 rather than 0.5: a notebook's margin, the line down a school
# notebook's page, is darker than its rules, and what was left of it widened the crop (`python bench/held_out.py
# --only margin`, 200 training digits: 94.5% read right rather than 91.0%, "not a digit" 4.0% rather than 12.0%;
# at 0.8, 1s in a ballpoint's pen across the frame were rules). Every realism row and the numbers the same.
LONE, FAINT = 0.4, 0.65
# The angle search. The sheet may be turned by up to RULE_TURN° (a note lies any way on a desk), so the angle
# at which the rules line up is found first, at 1° steps over at most COARSE_SAMPLE of the thin ink's pixels;
# then each rule's own within ±6° of it (a phone tilted draws them converging), in steps of 0.2°, over at most
# RULE_SAMPLE. At 0.5°, a rule between two steps drifted a row or two off its line across a photo, and what
# drifted stayed as ink; at 0.1°, tilted photos read the same (88.0% against 87.5%), in 21 ms against 18.
RULE_TURN, COARSE_SAMPLE, RULE_SAMPLE = 30, 1024, 4096
COARSE_ANGLES = np.arange(-RULE_TURN, RULE_TURN + 0.5, 1.0)
FINE_ANGLES = np.arange(-6, 6.1, 0.2)
# A mark that nowhere reaches SOLID of the strongest ink, or whose mean is under SHADING, is shading or noise.
# Where the light's share strengthened it by LIFTED or more, one whose mean is under SOFTER times that of the
# mark with the most ink is a dark surface's texture (_without_shading). Desk photos of 500 training digits a
# light read 85.6-94.2% right at 1.25, 85.6-93.8% at 2, and 81.2-92.2% without; the photo drawn anyhow 95.6%,
# 95.2% and 95.2%.
SOLID, SHADING, SOFTER, LIFTED = 0.5, 0.4, 0.6, 1.25
# A mark of under SPECK of the pixels of the mark with the most ink, where the light's share strengthened it
# DIMMER times as much as that mark or more, is a speck of a darker surface's texture. Desk photos of 500
# training digits a light read 91.2-95.2% right rather than 85.6-94.2%, the rest the same. Only specks: with
# every mark there dropped, 200 numbers of training digits that a sharp shadow's edge crossed at random read
# 79.0% exactly rather than 94.0%, their digits in the shadow lost, and with those under 0.75 of that mark's
# mean too, 93.0%: a thin pen's digit in the shadow is as soft beside a marker's in the light. Specks, 94.0%.
SPECK, DIMMER = 0.1, 2.0
# The mark the others are judged beside is the one with the most ink of those that reach STRONG of the strongest:
# on a desk under a hard shadow, the desk's wedge between the sheet's edge and the shadow's could hold more ink
# than the digit, never ink as strong (its peak 0.56-0.79 of it, the digit's 0.84-1.0, in six misread photos of
# training digits). Desk photos of 500 training digits under a gradient read 96.4% right rather than 95.8%, under
# a hard shadow 94.2% rather than 94.0%, every other photo the same; touching numbers in a shadow 85.0% exactly
# rather than 84.7%.
STRONG = 0.9
# A speck astray (_stray) is smaller than DOT times the square of the pen's width, smaller than any piece of a
# stroke, which is at least as long as the pen is wide, and lies beyond a pen's width from the box around the
# digit's marks: the sensor's noise or a grain of the desk, a pixel or a few, that widened the crop until the
# digit read small. Desk photos of 500 training digits a light read 94.0-97.4% right (the dim desk 95.2%,
# flagged 4.2%) rather than 93.0-97.4% (93.0%, 7.4%), the photo drawn anyhow 97.2% rather than 96.4%. Near the
# digit, such marks may be its own: a shadow's edge across a 3 left two pieces of its top 3 px wide, in a pen of
# 10, and without them it read as a 5. Specks by their extent rather than their area read 0.2-0.4 points less.
DOT = 1.0
# Where SPECKS or more lie astray, the paper has specks of its own, and they lie inside the digit's box as well as
# beyond it: a dot grid's print, as dark as a pencil's graphite. There, a speck no larger than the largest astray is
# the paper's too. `python bench/held_out.py --pencil` (200 training digits a scene): the dot grid read 86.0% right,
# 13.0% "not a digit", and 94.0%, 4.0%, the same from 2 to 16 specks; two scenes 0.5 points better, the rest, in pen
# too, 500 training digits a realism condition and numbers of training digits the same to the digit. No larger within
# ALIKE of its width: the noise along a speck's edge varies its size, and a dot beside a 1 in pencil was 15 px where
# the largest astray was 14 (test_a_pencils_digit_on_dot_grid_paper_leaves_the_grids_dots).
SPECKS = 4
# A stroke has the paper on both of its sides within a few pens' widths; a surface doesn't. Where the light is
# uneven, the paper's level around each pixel is looked for as far as a marker's widest strokes (_surroundings), and
# a darker surface narrower than that in some direction passes for ink: on a desk under a hard shadow, the desk in
# the shadow where the shadow's edge meets the sheet's, darker than the sheet and the lit desk on either side, and
# as wide as the digit's pen by twice its area over its perimeter. A mark is a surface where fewer than SURFACE of
# its pixels stand out of the paper's level looked for within PEN_REACH widths of the pen: the widest among the
# marks that reach the strongest ink (STRONG), which a surface never does, and a number's digits may come in
# different pens. Desk photos of 500 training digits under a hard shadow read 96.2% right rather than 94.2%, every
# other photo and the numbers the same; within 2 pens 97.0%, but the dim desk 94.4% rather than 95.2% (the
# narrower the reach, the more of a stroke the sensor's noise hides), and within 4, 95.8%. With the widest pen of
# every large mark, a surface could set its own reach. Beyond the frame's edge no paper can be looked for, so a
# mark that the frame cuts, on a surface that the light's share strengthened (LIFTED), is a surface unless it
# reaches the strongest ink: the desk rows under a soft shadow, a hard one and a gradient then read 0.2 points more
# (the hard shadow 96.4%), every other photo and the numbers the same.
PEN_REACH, SURFACE = 3, 0.5
# In a dim room, the sensor's noise riddles a darker surface with pinholes, as it does the desk along a sheet's
# edge (2 to 81 in the strips that misread dim desk photos of training digits took for ink, where the digits had
# none but their loops). Where the noise was smoothed, a mark short of the strongest ink (STRONG) with PINHOLES or
# more holes smaller than the square of the pen's width is noise over a surface: dim desk photos of 500 training
# digits read 96.2% right rather than 95.2%, every other photo and the numbers the same. Only there: a small 8 in
# a thick pen has loops as small, and in the numbers of training digits drawn as photos, with JPEG's noise, a faint
# 8, a 6 and a touching 88 were dropped (apart 22 -> 24 wrong of 300, touching 39 -> 41).
PINHOLES = 3
OUTLINE = np.pi / 4  # a slanted outline's length, over the pixel edges along it, on average (pen_width)
PAPER_BLOCKS = 5  # the background's opening, in blocks (see _opened)
# The lit paper is the brightest tenth of the frame's surfaces (_ink), and a surface is wider than SHEET_BLOCKS
# blocks: at 5, the opening took away the smaller sticky notes on a desk, and their polarity was lost again.
PAPER_PERCENTILE, SHEET_BLOCKS = 90, 3
NOISE_SIGMAS = 4.0  # ink is at least this many times the paper's noise above it
DENOISE_SIGMA = 1.0  # px: the Gaussian that smooths noise that would pass for ink
# Ink in a shadow is strengthened by the paper's light there, up to MAX_GAIN times. A shadow on paper seldom
# leaves under a third of the light; a dark desk does, and its grain, strengthened 4 times, passed for ink in
# marks larger than the digit (a 7 on a note on a grained desk in a shadow was "not a digit"). Desk photos of
# 300 training digits a light read 93.7-97.7% right at 3 against 91.3-96.0% at 4, every other photo the same,
# and numbers in a shadow 40-75% deep as well (90.7% exactly apart, 84.7% touching, both).
MAX_GAIN = 3.0
# Where the light's share is at its cap under a mark (DESK of MAX_GAIN or more, on average), the surface there is
# darker than a shadow leaves paper: a desk, whose grain the gain strengthened threefold with the rest. A mark there
# that the frame cuts is the desk's, however strong (_without_shading). Photos of 500 training digits (`python
# bench/realism.py --split train --seed 3 --only photo`): on a desk under a gradient 98.0% read right rather than
# 97.6%, "several digits" 0.0% rather than 0.2%; drawn anyhow 97.0% rather than 96.8%, 0.4% rather than 0.6%; every
# other photo row the same, and numbers of training digits. Every mark at the cap but the one with the most ink
# dropped took the dim desk's "several digits" from 0.8% to 0.2%, but also the digits of a number in a deep shadow
# (200 numbers of training digits apart: 81.5% exact rather than 93.5%).
DESK = 0.95
# A stroke is long beside its width; a dot, a stain or a sheet's punched hole with the desk through it is not. Beside
# a stroke, a mark is a blob where its pixels are fewer than BLOB times the largest disk inside it (a disk's are
# about one such disk, a square's 1.3, a stroke's twice as long as it is wide 2.5), that disk is wider than the pen
# (PEN_REACH's widest: a stroke's pieces are as wide as the stroke), and its box's longer side is under BLOB_SIZE of
# the longest stroke's (a number's small 9, its loop filled, is as round, but as tall as a digit). The mark with
# the most ink may be one: a hole darker than the ink is the strongest mark. Three holes along a sheet's edge were
# several digits or "not a digit": `python bench/held_out.py --only holes` (200 training digits) read 41.5% right,
# 55.5% "several digits", and 97.5%, none, with blobs dropped. 500 training digits a condition (`python
# bench/realism.py --split train --seed 3`): the hard shadow on a desk 97.0% rather than 96.8%, every other row the
# same; numbers of training digits the same.
# Not where the sensor's noise was smoothed: a faint stroke breaks into pieces 2-5 px across there, as round as
# dots and wider than the pen its pieces measure (a dim desk's 4 in 30 pieces was "not a digit").
BLOB, BLOB_SIZE = 2.0, 0.4
# A person frames what they wrote: a mark that the frame's edge cuts, beside a stroke as strong as a digit's
# (STRONG) that it doesn't, is something else in the photo, a pen lying on the sheet or a finger holding it,
# unless it is as strong, in the stroke's pen: ALIKE times as wide at most, as a number's 1 framed tight may be.
# Two digits drawn apart in one pen differed by 1.03 at the median and 1.24 at most (400 pairs of training
# digits). `python bench/held_out.py` (200 training digits a scene): a pen lying on the sheet read 52.5% right,
# 31.5% "not a digit" and 8.5% "several digits"; 80.0%, 17.0% and 1.0% with the wider marks dropped, and 84.0%,
# 13.5% and 1.0% with the softer ones too; a fingertip in from the frame's edge, whose outline the paper's level
# left, 95.5% and 1.0% "several digits", and 97.0% and none. 500 training digits a condition (`python
# bench/realism.py --split train --seed 3`): rules in a shadow soft or hard 0.2 points fewer "not a digit", the
# rest, and numbers of training digits, the same to the digit. With the stroke beside any large mark, not only a
# strong one, the pen read 82.0% with the wider marks dropped, but a 5 under a hard shadow went, joined to the
# desk the frame cut, beside a sliver of that desk. The stroke's strength is the strongest of the marks the person
# framed, not of all the photo's: a pen lying on the sheet darker than the digit's ink, as any is beside graphite,
# left no framed stroke strong enough, and stayed. The pen lying there now reads 87.0% rather than 85.0%; in
# pencil (`--pencil`) 64.0% rather than 51.0%, and a fingertip 86.5% rather than 73.5%. But not of a soft mark
# where the light's share lifted it (LIFTED), a desk's grain: where a digit touched the frame through a rule, a
# piece of desk under a hard shadow was taken for the mark framed, and the digit dropped. Nor is a line that runs
# across the frame, from edge to edge, in a pen narrower than every framed stroke's by ALIKE: a notebook's margin
# beside a digit in pencil, printed darker and finer than the graphite (`--pencil`, 200 training digits: the
# margin 84.0% -> 85.5%, the rest the same). Any mark the frame cuts, dropped in so narrow a pen, took digits whose
# stroke a rule's remnant joined to the frame's edge, their pen measured over the remnant too (three of 500
# training digits under a vignette and on a desk, `python bench/realism.py --split train --seed 3`).
ALIKE = 1.25
# A line far finer than the pen that wrote the digit, under THIN of its pen, and as long as the digit is, is
# printed: a form's box around the digit, a notebook's margin that the rules left. A piece of the digit's own
# stroke that a shadow's edge left as fine is short (test_specks_astray_are_not_ink). `python bench/held_out.py`
# (200 training digits a scene): a box printed 1-3 px wide around the digit read 82.0% right, 20.5% "not a
# digit", and 95.5%, 2.5%, with such lines dropped; the margin 94.5% and 97.0%, the rest the same. 500 training
# digits a condition (`python bench/realism.py --split train --seed 3`) and numbers of training digits the same to
# the digit. The digit is the mark with the most ink left of those as strong as the strongest the person framed
# (ALIKE), or of the strong ones where they framed none: a pen lying on the sheet, dropped, is wider, and a margin
# beside a digit in pencil is darker than the graphite (`--pencil`: the margin 79.5% rather than 79.0%, the box
# 88.5% rather than 88.0%).
THIN = 1 / 3
# No digit holds another's stroke inside its loop: a mark that does is a ring drawn by hand round the digit to pick
# it out, or a box or the desk around a note. Inside, a digit: a mark as long as RING of the loop's box is across
# (a dot inside a zero, written to tell it from an O, is a pen wide; a digit circled loosely is half the ring's
# width). `python bench/held_out.py` (200 training digits a scene): a ring round the digit in its pen read 10.0%
# right, 60.5% "not a digit", and 66.0%, 25.0% with such loops dropped, nearly all of the rest rings that the
# frame cuts; 84.0%, 11.0% with the frame's edge closing a loop within two pens of it, most of the rest rings cut in
# two; a form's box 95.5% and 96.0%. 500 training digits a condition (`python bench/realism.py --split train
# --seed 3`) and numbers of training digits the same to the digit.
RING, RINGS = 1 / 3, 4
# A hand's loop need not meet: where its ends stop short of each other, or of the frame's edge, by up to GAP of its
# pens, it is a loop all the same. `python bench/held_out.py --only circle` (200 training digits): a ring round the
# digit read 84.0% right, 11.0% "not a digit", and 94.0%, 3.0% with such gaps bridged (1 to 3 pens alike: the gaps
# drawn are a pen or less); every other scene, 500 training digits a realism condition and numbers of training
# digits the same to the digit.
GAP = 2
# A line drawn under the digit to pick it out is one stroke across, at least FLAT times as long, under all the other
# ink and as wide as UNDER of it, and apart from it by half its pen or more: a piece of the digit that a rule's
# removal cut from it lies a rule's width away (test_a_lone_faint_rule_across_the_frame_is_not_ink), and a 5's or
# a 7's bar drawn apart lies on top. `python bench/held_out.py` (200 training digits a scene): a line under the
# digit in its pen read 50.5% right, 23.0% "not a digit", and 93.0%, 3.5% with such lines dropped (84.0% with
# the line apart by a whole pen); a pen lying under the digit 84.0% and 85.0%. 500 training digits a condition
# and numbers of training digits the same to the digit. One stroke across lies in a box ACROSS pens tall. Drawn at
# a slant or bowed, as a hand draws one, its box is taller, and in pencil, whose grain makes the pen measure finer,
# it was a stroke of the digit more often than not: so it is one stroke too where no column crosses it taller than
# that, if it stands CLEAR pens clear of every other mark. A piece of the digit that broke off lies as flat and as
# low, but near where it broke: a 3 in a thin pen, its lower arc apart from the rest 1.6 pens at its nearest. Or
# where the frame cuts it, beyond which it may join the rest: the same 3 cropped tight, its lower arc running off the
# frame and back, 3.7 pens from the rest. And a line lies across: a 1 standing under a speck, crossed a pen wide from
# top to bottom, is none. `python bench/held_out.py --pencil` (200 training digits): the underline read 84.0% right,
# 9.5% "not a digit", and 93.5%, 3.5% (in pen 93.0% both); every other scene, 500 training digits a realism
# condition and numbers of training digits the same to the digit.
FLAT, UNDER, ACROSS, CLEAR = 4, 0.5, 3, 2
# The paper's level and noise are the median pixel's and the median distance from it, for most pixels are
# paper. A digit cropped tight to its ink is not: where the pixels nearer the strongest ink than the paper are
# CROWDED of the frame or more, the level and the noise are the other pixels'. 300 MNIST test digits enlarged 10
# times and cropped to their ink (a third of each frame inked, in the median; 13-62%) read 213 right and sure, 78
# "no digit found", with the median pixel's level and noise: its soft edges filled the median, the noise read as
# a third of the ink, and the threshold erased the digit. Now 285 and 6; with a margin of 5% of the longer side,
# 276 and 23, now 299 and none. 500 digits a condition (`python bench/realism.py`, training and test digits), the
# figures of `make claims`, and numbers of training digits are the same to the digit. Taken from every frame
# alike, the pixels nearer the paper cut its noise short where a dim room's noise is as strong as the ink (the dim
# desk 96.0-96.2% rather than 97.4%). Not in an image too small for blocks (_opened), read as mostly paper
# throughout: Fashion-MNIST's 28×28 clothes fill their frames too, and choose the thresholds kept with the weights.
CROWDED = 0.25
# Where most of what passed for ink was judged no ink, it is looked at again (_second_look), in the units of the
# strongest of the marks that never reached STRONG: a digit in pencil, graphite's grey and grainy, is soft beside
# what is darker than it, a desk through a sheet's punched holes, a form's printed box, or the darkest facet of a
# crumpled sheet, and was judged shading, or the darker marks taken for the digit. The second look stands where it
# finds a digit the first didn't: more ink than the first kept inside the frame; its largest mark strokes, no more
# than FILLED of the box around it inked (a highlighter's band's pieces are a surface), and inside the frame (a
# desk's grain runs off it); and of what the first kept, under one BESIDE-th kept again (the holes, the box: beside
# the digit). `python bench/held_out.py --pencil` (200 training digits a scene): beside the holes 65.5% read right,
# now 89.0%; the box 61.5%, 88.0%; a pen lying on the sheet 40.5%, 51.0%; a fingertip 62.0%, 73.5%; a crumpled
# sheet 88.0%, 90.0%; no scene fewer but the highlighter's band, 62.5% and 62.0%. In pen, every scene the same to
# the digit (docs/model.md, "A digit in pencil"). Where all the first look kept runs off the frame, it is looked
# at again too, though it kept most: a pen lying on the sheet or a fingertip, far darker than the graphite, was
# all the ink there was. A pen lying on the sheet now reads 82.5% rather than 66.5%, a fingertip 97.0% rather than
# 86.5%, a ring round the digit 86.0% rather than 82.0%, the rest in pencil the same or better; in pen, one digit
# with writing showing through the sheet "several digits" rather than "not a digit". And where all it kept are
# surfaces (_surfaces), the desk through the punched holes beside a digit with less ink than they have: beside the
# holes 95.5% rather than 89.0%, a fingertip 97.5% rather than 97.0%, the rest the same. Or loops round most of
# what it judged no ink (_around), a ring drawn round the digit in a darker pen, a form's box printed round it: the
# ring 91.0% rather than 86.0%, the box 90.5% rather than 88.5%, the rest, in pen too, the same. Round any of it,
# a digit's loops round the writing showing through the sheet were dropped for it (82.0% -> 78.0%, 5.0% "several").
FILLED, BESIDE = 0.5, 10
# A disc fills π/4 (0.785) of the box around it: the desk through a punched hole filled 0.78-0.81 (_surfaces). Of
# 300 training digits drawn as bench/realism.py draws them, in the thickest pen (0.30) or blown up from the smallest
# scans (8-11 px), no largest mark without a hole and with a box under twice as long as wide filled more than 0.7;
# more than 0.5, 111 of the thickest pen's did: surfaces, which the second look drops for whatever else a photo holds.
DISC = 0.7
# Ink is darker than the surface it lies on. Where the paper's level cuts a piece off a surface, as the corner of a
# note on a lighter desk, narrower than the level's reach, with the desk on both its sides, the piece stands out as
# a flat mark as wide as a thick pen; beyond where it was cut, the surface runs on at its own level. So the pixels of
# a mark no darker than the surface beside it, by the ink threshold, are a piece of that surface where PIECE of what
# lies two blocks (PIECE_BLOCK) out from them is as dark as the ink nearby, within LEVEL of the strongest ink: a
# piece's cut side is one of its three or four, and a stroke has paper all round. Looked at 2 px out, pixel by
# pixel, a grainy pencil's pieces had a third of theirs as dark, between its grains and on squared paper's rules.
# `python bench/held_out.py --only note` (200 training digits): 93.0% read right, 1.0% "several digits"; now 95.5%
# and none; in pencil 49.0% and 8.5%, now 55.5% and 0.5% (docs/model.md, "A piece of a surface is no ink").
PIECE_BLOCK, PIECE, LEVEL = 4, 0.25, 0.1
MEDIAN_SAMPLE = 4096  # a level needs no more pixels than this (its standard error is 2% of the noise)


def _gray_and_alpha(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Luminance in [0,1] and opacity in [0,1] (None when the image is opaque)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I"):
        # convert("L") would clip 16-bit values to 255, turning everything white.
        return np.clip(np.asarray(im, dtype=np.float32) / 65535, 0, 1), None
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float32)
        return np.clip(a / 255 if a.max() > 1 else a, 0, 1), None
    im = luminance(im)  # decode.load() has done it for uploads: this costs nothing then
    if im.mode == "L":
        return np.asarray(im, dtype=np.float32) / 255, None
    la = np.asarray(im)
    if la[..., 1].min() > OPAQUE:  # tested on the bytes, which spares a float copy of the alpha
        return la[..., 0].astype(np.float32) / 255, None
    la = la.astype(np.float32) / 255
    return la[..., 0], la[..., 1]


def _flatten_alpha(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Put transparent areas on white or black, whichever the paper is.

    A canvas drawing is strokes on nothing, in one colour, their soft edges in the alpha: dark strokes go on
    white, light strokes on black. A GIF or an 8-bit PNG with its paper keyed out keeps the strokes' soft edges
    opaque, and a photo turned in an editor keeps its paper opaque, its corners transparent. Where the opaque
    levels span ink and paper, the paper lies on the side of their mean where the opaque pixels bordering the
    transparent ones lie. By the strokes' mean alone, 500 MNIST test digits at 280 px, smoothly enlarged and white
    keyed out, went on black where their soft edges outweighed their ink: 383 read right and sure, 83 "not a
    digit"; 300 light on black, black keyed out, 228 read right; now 492 (4 "not a digit") and 291, as many as
    with their paper kept. Enlarged blockily, 490 before and 491 now; 300 photos turned 8-25° in an editor, 274
    and 277.
    """
    weight = alpha.sum()
    if weight < 1e-3 * alpha.size:
        raise NoDigitFound(N_("no digit found: the image is fully transparent; draw or photograph a digit"))
    mean = (gray * alpha).sum() / weight
    light = mean < 0.5  # a canvas's strokes darker than the middle go on white
    opaque = alpha >= 0.5
    if gray.max(where=opaque, initial=0) - gray.min(where=opaque, initial=1) >= MIN_CONTRAST:
        border = opaque & ~ndimage.binary_erosion(opaque, border_value=1)
        if border.any():
            light = _median(gray[border]) > mean
    return gray * alpha + np.float32(light) * (1 - alpha)


def _opened(x: np.ndarray, level: np.ufunc = np.minimum, size: int = PAPER_BLOCKS) -> np.ndarray | None:
    """A grey opening of an image at coarse scale, one value a block, or None for an image of at most 2×2 blocks
    (every block neighbours every other), such as a 28×28 crop: each block's level (its least pixel, or with
    np.add its mean), the least of each size×size blocks around it (taking away bright marks up to `size` blocks
    wide), then the greatest of each size×size again. A block is a sixteenth of the longer side, 16 px at least."""
    h, w = x.shape
    b = _block(x)
    if max(-(-h // b), -(-w // b)) <= 2:
        return None
    coarse = _by_blocks(x, b, level)
    if level is np.add:
        # Each block's pixels, the last row's and column's short; np.diff took 33 µs to count them.
        rows, cols = ([min(b, n - i) for i in range(0, n, b)] for n in (h, w))
        coarse /= np.outer(rows, cols).astype(x.dtype)
    return ndimage.maximum_filter(ndimage.minimum_filter(coarse, size, mode="nearest"), size, mode="nearest")


def _block(x: np.ndarray) -> int:
    return max(16, -(-max(x.shape) // 16))


def _by_blocks(x: np.ndarray, b: int, level: np.ufunc) -> np.ndarray:
    """Each b×b block's level (level.reduce over it), the last row and column of blocks short where b doesn't
    divide the side. As a reduce over reshaped rows, a side at a time: np.minimum.reduceat took 267 µs at
    512×384, this 40, to the same bit."""
    for _ in range(2):  # rows, then the columns of the transposed result
        n = len(x) // b
        out = level.reduce(x[: n * b].reshape(n, b, *x.shape[1:]), axis=1)
        if len(x) > n * b:
            out = np.concatenate([out, level.reduce(x[n * b :], axis=0, keepdims=True)])
        x = out.T
    return x


def _in_blocks(x: np.ndarray, b: int, level: np.ufunc) -> np.ndarray:
    """Each whole b×b block's level (level.reduce over it), the last rows and columns short of a block left out.
    As strided operations, b at a time: for 4×4 blocks of a 512×384 image, 90 µs where _by_blocks took 275."""
    h, w = (n // b * b for n in x.shape)
    rows = functools.reduce(level, (x[k:h:b] for k in range(b)))
    return functools.reduce(level, (rows[:, k:w:b] for k in range(b)))


def _paper(x: np.ndarray) -> np.ndarray:
    """The background's level under each pixel of an ink-bright image, following uneven light and shadows.

    Its coarse opening (_opened), which takes away strokes, smoothed back to full size. Without the opening's
    last step a shadow or a vignette, brighter than the paper around it here, was under the estimate by its
    whole depth near its edge, and became ink. Where the paper's level around a pixel (_surroundings) is
    higher, as it is beside a shadow's sharp edge, which no coarse estimate follows, that is the level.
    """
    h, w = x.shape
    coarse = _opened(x)
    if coarse is None:  # one level (1×1)
        return np.full((1, 1), x.min(), dtype=x.dtype)
    if coarse.min() == coarse.max():  # flat paper, such as a drawing's: smoothing leaves it as it is
        return np.full((h, w), coarse[0, 0], dtype=x.dtype)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BILINEAR))
    # As far as the opening reaches, so that a stroke it keeps is kept here too, to its edge: three blocks, half
    # as far, made holes in a marker's 6 (test digits as uploads read 98.9% rather than 99.0%).
    return np.maximum(smooth, _surroundings(x, _paper_reach(x)))


def _paper_reach(x: np.ndarray) -> int:
    """How far _paper() looks for the paper's level around each pixel: as far as the coarse opening reaches."""
    return PAPER_BLOCKS * _block(x)


def _surroundings(x: np.ndarray, reach: int, box: tuple[slice, slice] = np.s_[:, :]) -> np.ndarray:
    """The paper's level around each pixel of an ink-bright image, at the scale of a stroke: over four directions
    and distances up to `reach`, the lowest of the higher of the two pixels on either side of it; for the pixels
    in `box` only, the whole image by default.

    A stroke has paper on both of its sides at some distance across it; the edge of a hard shadow has the
    shadow's level on one side in every direction, so it is no ink, however sharp (the coarse opening alone
    left it as a line of ink, and a 7 with a phone's shadow over one corner read as several digits). Beyond
    the frame is no side: a desk at the image's edge, wide in every direction that stays in the frame, is not
    ink either."""
    (top, bottom, _), (left, right, _) = (side.indices(n) for side, n in zip(box, x.shape, strict=True))
    h, w = bottom - top, right - left
    # Only what lies within reach of the box. In 8-bit levels, as the pixels came: a quarter of the memory to
    # stream through, and 6 times as fast (1.5 against 9.4 ms at 512×384). Beyond the frame is full ink, the one
    # level that is never the higher of two.
    near = x[max(top - reach, 0) : bottom + reach, max(left - reach, 0) : right + reach]
    beyond = (
        (reach - min(top, reach), reach - min(x.shape[0] - bottom, reach)),
        (reach - min(left, reach), reach - min(x.shape[1] - right, reach)),
    )
    padded = np.pad(np.rint(near * 255).astype(np.uint8), beyond, constant_values=255)
    out, pair = np.full((h, w), 255, np.uint8), np.empty((h, w), np.uint8)
    for d in [*(2 ** np.arange(1, int(np.log2(reach)) + 1)), reach]:
        for dy, dx in ((0, d), (d, 0), (d, d), (d, -d)):
            a = padded[reach + dy : reach + dy + h, reach + dx : reach + dx + w]
            b = padded[reach - dy : reach - dy + h, reach - dx : reach - dx + w]
            np.minimum(out, np.maximum(a, b, out=pair), out=out)
    return out.astype(np.float32) / np.float32(255)


def _sample(a: np.ndarray) -> np.ndarray:
    """A strided sample of at most MEDIAN_SAMPLE of an image's values."""
    a = a.ravel()
    return a[:: -(-a.size // MEDIAN_SAMPLE)]


def _median(a: np.ndarray) -> float:
    """np.median of a strided sample of at most MEDIAN_SAMPLE values.

    Sorted, not np.median or np.partition: numpy's introselect slows down a hundredfold on the few distinct
    levels of a clean drawing (24 ms for a two-level 512×512 image), while its SIMD sort stays fast.
    """
    a = np.sort(_sample(a))
    mid = a.size // 2
    return float(a[mid] if a.size % 2 else (a[mid - 1] + a[mid]) / 2)


def _percentile(a: np.ndarray, q: float) -> float:
    """np.percentile(a, q) to the bit (its "linear" method), from a sort, for _median's reason: introselect on
    the few levels of a canvas's blocks and paper took 0.2 ms a call in context, and numpy's percentile adds
    60 µs of its own around it."""
    a = np.sort(a, axis=None)
    at = (a.size - 1) * (q / 100)
    if at >= a.size - 1:
        return float(a[-1])
    below = int(at)
    t = at - below
    lo, hi = a[below], a[below + 1]
    step = hi - lo
    return float(hi - step * (1 - t) if t >= 0.5 else lo + step * t)  # numpy's _lerp, in the array's dtype


def _noise(x: np.ndarray, crowded: bool = False) -> float:
    """The paper's noise in an image that is mostly paper at level 0, its strongest ink at 1: the standard
    deviation that the median absolute deviation of a strided sample gives, for Gaussian noise. In a `crowded`
    one, of the pixels nearer the paper than the ink."""
    sample = _sample(x)
    if crowded:
        sample = sample[sample < 0.5]
    return 1.4826 * _median(np.abs(sample)) if sample.size else 0.0


def _extremes(a: np.ndarray, k: int) -> tuple[float, float]:
    """The k-th smallest and k-th largest values, counted from 0, as np.partition finds them, each from a few
    pixels. Where the minimum or maximum repeats more than k times, as on a drawing's few levels, it is the k-th
    itself (np.partition took 0.8 ms on those at 512×512). Else the k-th is among the pixels at or beyond a
    strided sample's own k-th, which more than k pixels reach: a few hundred of a photo's 200,000, 0.3 ms in
    all where partitioning the whole took 2.4 (100 realism photos, 384×512, on a loaded machine)."""
    flat, sample = a.ravel(), np.sort(_sample(a))
    lo, hi = flat.min(), flat.max()
    if np.count_nonzero(flat == lo) <= k:
        lo = np.partition(flat[flat <= sample[k]], k)[k]
    if np.count_nonzero(flat == hi) <= k:
        high = flat[flat >= sample[-1 - k]]
        hi = np.partition(high, high.size - 1 - k)[high.size - 1 - k]
    return lo, hi


def _lightest_edge(x: np.ndarray) -> float:
    """The lightest pixel along the frame's edge."""
    return float(max(x[[0, -1]].max(), x[:, [0, -1]].max()))


@dataclasses.dataclass(frozen=True)
class _Page:
    """What an ink map was measured against where the light left the paper uneven: the ink-bright image, the
    paper's level under each pixel, the light's share that strengthened the ink there (None where none did), and
    the ink map's unit in the image's levels."""

    gray: np.ndarray
    paper: np.ndarray
    gain: np.ndarray | None
    unit: float

    def _scale(self, box: tuple[slice, slice]) -> np.ndarray | np.float32:
        """The ink map's units per level of the image, over the box."""
        unit = np.float32(self.unit)
        return np.float32(1) / unit if self.gain is None else self.gain[box] / unit

    def rise(self, reach: int, box: tuple[slice, slice]) -> np.ndarray:
        """How much higher the paper's level is under each pixel of the box, in the ink map's units, looked for
        within `reach`."""
        return np.maximum(_surroundings(self.gray, reach, box) - self.paper[box], 0) * self._scale(box)

    def cut_off(self, labels: np.ndarray, n: int, box: tuple[slice, slice], x: np.ndarray, margins: np.ndarray) -> bool:
        """Drops from the ink map `x` the pieces of a surface that the paper's level cut off it (PIECE), its `n`
        marks labelled over the `box`, which lies `margins` in from the frame's edges (_cut); whether it dropped
        any.

        Looked at in blocks of PIECE_BLOCK pixels (_in_blocks), two blocks out from the ink: past a stroke's soft
        edge, and a rule's few pixels averaged away with the paper around them. A mark the rules below take apart
        themselves is left to them: one the frame's edge cuts (ALIKE, DESK), and the mark with the most ink where
        it is shading as a whole, with the digit on it (SHADING)."""
        gray, ink = self.gray[box], labels > 0
        count = _in_blocks(ink.astype(np.float32), PIECE_BLOCK, np.add)
        inked = count > 0
        ring = ndimage.maximum_filter(inked, 5) & ~ndimage.maximum_filter(inked, 3)
        level = _in_blocks(gray, PIECE_BLOCK, np.add) / np.float32(PIECE_BLOCK**2)  # of the paper alone, in the ring
        # The ink's own level nearby: its mean over the blocks within two.
        near = ndimage.uniform_filter(_in_blocks(gray * ink, PIECE_BLOCK, np.add), 5)
        near /= np.maximum(ndimage.uniform_filter(count, 5), np.float32(1e-6))
        rows, cols = (k * PIECE_BLOCK for k in ring.shape)
        # The light's share is smooth: one pixel a block tells it.
        gain = 1 if self.gain is None else self.gain[box][:rows:PIECE_BLOCK, :cols:PIECE_BLOCK]
        on = ring & ((level - near) * gain / np.float32(self.unit) >= -LEVEL)
        if not on.any():
            return False
        size = np.bincount(labels.ravel(), minlength=n + 1)
        total = np.bincount(labels.ravel(), x[box].ravel(), minlength=n + 1)
        total[0] = 0
        left = _cut(labels, n, margins)
        main = int(np.argmax(total))
        left[main] |= total[main] < SHADING * size[main]
        # The surface's level beside each mark, and the pixels of the mark no darker than it, in pieces.
        beside = ndimage.maximum_filter(_in_blocks(labels, PIECE_BLOCK, np.maximum), 5)[on]
        found = np.bincount(beside, minlength=n + 1) * ~left
        surface = np.bincount(beside, level[on], minlength=n + 1) / np.maximum(found, 1)
        above = (gray - surface[labels].astype(np.float32)) * self._scale(box)
        pieces, m = ndimage.label((found[labels] > 0) & (above < INK_THRESHOLD), structure=np.ones((3, 3)))
        if not m:
            return False
        piece = ndimage.maximum_filter(_in_blocks(pieces, PIECE_BLOCK, np.maximum), 5)
        share = np.bincount(piece[on], minlength=m + 1) / np.maximum(np.bincount(piece[ring], minlength=m + 1), 1)
        # A piece smaller than a block is too small to be looked at in blocks: a speck of a faint stroke's edge.
        share[np.bincount(pieces.ravel(), minlength=m + 1) < PIECE_BLOCK**2] = 0
        share[0] = 0
        gone = (share >= PIECE)[pieces]
        if not gone.any():
            return False
        # What is left of a mark cut is ink written on the surface where some of it stands out as a stroke's
        # middle does (SOLID), or where it is larger than what was cut (a faint digit that a shadow's edge
        # crosses); else it is the surface's own shading, as a fingertip's rim.
        lost = np.bincount(labels[gone], minlength=n + 1)
        rest, k = ndimage.label((lost[labels] > 0) & ~gone, structure=np.ones((3, 3)))
        kept = rest > 0
        parts = rest[kept]
        peak = np.zeros(k + 1, np.float32)
        np.maximum.at(peak, parts, above[kept])
        owner = np.zeros(k + 1, np.int64)
        owner[parts] = labels[kept]
        gone |= kept & ((peak < SOLID) & (np.bincount(parts, minlength=k + 1) < lost[owner]))[rest]
        x[box][gone] = 0
        return True


def _ink(gray: np.ndarray) -> np.ndarray:
    """Ink bright on black, in [0,1], whatever the polarity, contrast and lighting of the source."""
    # The paper is the brightest surface wider than a stroke: the 90th percentile of the blocks' means, opened so
    # that a board's chalk, bright and thin, is taken away; a pen's strokes darken only the blocks they cross.
    # The means, not the minima: a dim room's noise put the minima under the paper, and a dim photo was taken
    # for chalk on a board. Not the frame's median: a sheet on a dark desk may fill less than half of the
    # frame, and the sheet was then taken for a board. An image too small for blocks is mostly paper: its median.
    opened = _opened(gray, np.add, SHEET_BLOCKS)
    background = _median(gray) if opened is None else _percentile(opened, PAPER_PERCENTILE)
    # The 16th darkest and lightest pixels: robust to a few specks, yet a tiny digit in a big image still counts.
    k = min(INK_PIXELS, gray.size // 2)
    dark, light = _extremes(gray, k)
    # The ink is whichever extreme lies further from the background: dark pen on paper, or chalk on a board.
    on_paper = background - dark > light - background
    if not on_paper and opened is not None and 2 * _lightest_edge(gray) > background + light:
        # Chalk is thin, as ink is: the board lies on both sides of each stroke. A surface lighter than the paper
        # that the frame's edge cuts, a white desk beside a coloured note, has the frame on one side, and was
        # taken for the ink, the note for a board. So where the frame's edge reaches the light extreme, the
        # light is as strong as it stands out of what lies around it (_surroundings). `python bench/held_out.py
        # --only note` (200 training digits): 88.0% read right, 7.0% "not a digit", 2.5% "several digits"; now
        # 93.0%, 4.0% and 1.0%, every other scene the same, as are 500 test digits a realism condition and 1,600
        # numbers of training digits. Looked at only there: a 512×384 board with a strip of white wall along its
        # side took 16.3 ms rather than 11.7, and one framed by the board alone the same 4.7 (median of 20, alternated).
        thin = gray - _surroundings(gray, _paper_reach(gray))
        on_paper = background - dark > _extremes(thin, k)[1]
    if on_paper:
        gray, extreme = 1 - gray, 1 - dark
    else:
        extreme = light
    paper = _paper(gray)
    uneven = bool(paper.min() < paper.max())  # paper the light left even needs no gain, nor a look around it
    # The lit paper's level, as above: not the median, which a desk around the sheet makes the desk's.
    typical = float(paper[0, 0] if paper.shape == (1, 1) else _percentile(_sample(paper), 100 - PAPER_PERCENTILE))
    gain = None
    if on_paper and uneven:
        # Light multiplies: ink in a shadow is as much darker than its paper, in proportion, as ink in the
        # light. Taken as a share of the paper's light (up to MAX_GAIN times), a stroke keeps its strength
        # across a shadow, and so does a rule, which one level then takes off along its whole length: lined
        # paper in a shadow read 86.0% (realism benchmark), with the rule's shadowed half left as ink.
        lit = np.float32(1 - typical)
        gain = lit / np.maximum(1 - paper, lit / MAX_GAIN)

    def risen(offset: float = 0.0) -> np.ndarray:
        """How far each pixel stands out of the paper, in the light's share, less `offset`."""
        x = gray - paper
        if gain is not None:
            x *= gain
        if offset:
            x -= np.float32(offset)
        return x

    x = risen()
    # The block minima sit at the bottom of the paper's noise; most pixels are paper, so the median is its level,
    # but for a digit cropped tight (CROWDED).
    contrast = extreme - typical
    sample = _sample(x)
    nearer = sample[2 * sample < contrast]
    crowded = paper.shape != (1, 1) and 0 < nearer.size <= (1 - CROWDED) * sample.size
    offset = _median(nearer if crowded else sample)
    x -= offset
    # The strongest ink against the typical paper.
    ink = float(contrast - offset)
    if ink < MIN_CONTRAST:
        raise NoDigitFound(BLANK)
    if gain is not None:
        # Measured as the ink is, in the light's share: as strong as it stands out of the paper beneath it, not as
        # the darkest pixel stands out of the lightest paper. Graphite at a sheet's dim end is darker than the lit
        # paper by the light lost as well, and the whole digit was weaker the less light reached any of it, its
        # grainy edges under the ink threshold (test_a_pencils_stroke_is_as_strong_wherever_the_light_falls). Only
        # where that ink is SOLID against the darkest pixel's contrast, as a stroke is: else nothing is ink at all
        # but shading, and the strongest is a trace that a hard shadow's edge left on a blank sheet, which at full
        # strength was read as a digit (test_a_blank_sheet_under_a_hard_shadow_is_no_digit). Never stronger than
        # against the lightest paper, as before (3 of 225 desk, dim and anyhow photos of training digits would be).
        # `python bench/held_out.py --pencil` (200 training digits a scene): a note 56.0% -> 61.0%, the margin 86.5% ->
        # 90.0%, a crumpled sheet 90.0% -> 93.0%, the box 90.5% -> 92.5%, a pen lying there 83.0% -> 84.5%; a fingertip
        # 97.5% -> 96.5%, the underline 93.5% -> 93.0%, the rest the same or up to a point better. In pen, glare 94.5%
        # -> 95.5%, a note 95.5% -> 95.0%. 500 training digits a realism condition: the hard shadow on a desk 97.0% ->
        # 97.6% ("several digits" 0.8% -> 0.4%), drawn anyhow 97.6% -> 98.0%, two vignette rows 0.2 points fewer; of
        # 1,600 numbers of training digits, 4 more read exactly.
        strongest = float(_extremes(x, k)[1])
        if strongest >= SOLID * ink:
            ink = min(ink, max(strongest, MIN_CONTRAST))
    x /= ink
    if paper.shape == (1, 1):  # too small to hold rules, or light uneven enough to leave shading
        x[x < INK_THRESHOLD] = 0  # negatives included, so only the top needs clipping
        return np.minimum(x, 1, out=x)
    x, noisy, floor = _denoised(x, crowded)
    np.copyto(x, 0, where=x < floor)  # x[x < ...] = 0 took 227 µs, this 174
    np.minimum(x, 1, out=x)
    page = _Page(gray, paper, gain, ink) if uneven else None  # the paper's level followed _surroundings
    x, ruled = _without_rules(x)
    marked = x > 0  # what passed for ink, before _without_shading takes from x in place (_second_look)
    found = int(np.count_nonzero(marked))
    kept = _without_shading(x, page, noisy)
    # Counted as what isn't paper: np.count_nonzero of float32 took 209 µs at 512×512, its comparison with 0 and
    # the count of that 38.
    held = int(kept.size - np.count_nonzero(kept == 0))
    # Surfaces are looked for only where what was judged no ink is a BESIDE-th of what was kept, as a digit beside
    # them is: labelling the marks again took 1.8 ms of the page's canvas, 2.1× its ink, where nothing was.
    if 2 * held < max(found, INK_PIXELS) or _unframed(kept, marked if BESIDE * (found - held) >= held else None):
        # Most of what passed for ink was judged no ink: shading, a desk's grain, or a digit in pencil judged
        # beside something darker (FILLED, BESIDE); or all that was kept runs off the frame, as a pen lying on the
        # sheet does beside a digit in pencil, where a person frames what they wrote, or is surfaces, as the desk
        # through a sheet's punched holes is. Else nothing more is done.
        again = _second_look(risen(offset), ink, crowded, page, marked, kept)
        if again is not None:  # it holds at least INK_PIXELS of ink that the first look didn't
            return again
    # What is left of noise is a speck, which the fit would blow up into a block and read as a digit (one in 200
    # noise images, at 42%: not flagged).
    if held < INK_PIXELS:
        raise NoDigitFound(BLANK)
    return _bridged(kept, ruled)


def _second_look(
    risen: np.ndarray,
    ink: float,
    crowded: bool,
    page: _Page | None,
    marked: np.ndarray,
    kept: np.ndarray,
) -> np.ndarray | None:
    """The marks that look like ink, judged again in units of the strongest of the marks that never reached the
    strongest ink (STRONG of `ink`, in the units of `risen`), beside the first look's `kept` of what it `marked` as
    passing for ink; or None where that finds no other digit (FILLED, BESIDE). Its unit is never taken from a mark
    that the frame's edge cuts, or that lies where the light's share lifted it (LIFTED): a person frames what they
    wrote, and a dark desk's grain beside the sheet is as soft as a pencil's stroke (its stripes, taken for strokes,
    lost a 6 under a vignette). Nor from the rules, which the first look took off what it marked: they join every
    mark they cross into one, and beside a notebook's margin that one was as strong as the margin, the digit in
    pencil in it. Nor from a line printed far finer than the largest soft mark's pen (THIN): taken off as rules, a
    printed box's top and bottom leave its sides apart, each as soft, and stronger than graphite (a 5 in a box was
    "not a digit"). What the first look kept that runs across the frame, from edge to edge, is no digit the person
    framed, and is dropped: a notebook's margin as wide as the graphite, which the second look keeps too, seemed the
    first look's digit (BESIDE), and the digit in pencil beside it was lost. And what the first kept that the frame
    cuts is not the ink the second must find more than: a pen lying on the sheet has more ink than the digit. Nor are
    the surfaces it kept (_surfaces), the desk through a sheet's punched holes, or the loops round what it judged no
    ink (_around), which are dropped whole before the marks are judged: judged beside them again, the digit was
    shading again."""
    x, noisy, floor = _denoised(risen / np.float32(ink), crowded)  # as the first look saw it
    labels, n = ndimage.label(marked, structure=np.ones((3, 3)))
    inked = np.nonzero(labels)
    marks, values = labels[inked], x[inked]
    peak = np.zeros(n + 1, np.float32)
    np.maximum.at(peak, marks, values)
    soft = (peak < STRONG) & ~_cut(labels, n, np.zeros(4))
    gain = None if page is None else page.gain
    size = np.bincount(marks, minlength=n + 1)
    soft &= _lifted(marks, None if gain is None else gain[inked], size) < LIFTED
    pens = _pen_widths(labels, size)
    soft &= pens >= THIN * pens[np.argmax(np.where(soft, size, 0))]
    soft = values[soft[marks]]
    if soft.size < INK_PIXELS:
        return None
    unit = float(np.partition(soft, soft.size - INK_PIXELS)[soft.size - INK_PIXELS])
    if unit * ink < MIN_CONTRAST:
        return None
    x /= np.float32(unit)
    np.copyto(x, 0, where=x < max(INK_THRESHOLD, floor / unit))
    np.minimum(x, 1, out=x)
    again = None if page is None else dataclasses.replace(page, unit=page.unit * unit)
    x, ruled = _without_rules(x)
    first = kept > 0
    labels, n = ndimage.label(first, structure=np.ones((3, 3)))
    surfaces = _surfaces(labels, n) | _around(labels, n, marked & ~first)
    if surfaces[1:].any():
        # Whole, with the rim that these units add round them: each mark they make most of.
        marks, m = ndimage.label(x > 0, structure=np.ones((3, 3)))
        on = np.bincount(marks[surfaces[labels]], minlength=m + 1)
        gone = 2 * on >= np.bincount(marks.ravel(), minlength=m + 1)
        gone[0] = False  # the paper
        x[gone[marks]] = 0
    x = _without_shading(x, again, noisy)
    edges = _edges(labels, n, np.zeros(4))
    beside = _across(edges) | surfaces
    beside[0] = False  # the paper
    lying = beside[labels]
    first &= ~lying
    x[lying] = 0
    second = x > 0
    found, before = np.count_nonzero(second), np.count_nonzero(first)
    framed = np.count_nonzero(first & ~np.logical_or.reduce(edges)[labels])
    if found - np.count_nonzero(second & first) < INK_PIXELS or found <= framed:
        return None
    # Nor a speck beside the surfaces dropped: what is found instead of them must be a BESIDE-th of them.
    if BESIDE * found < np.count_nonzero(surfaces[labels]):
        return None
    labels, n = ndimage.label(second, structure=np.ones((3, 3)))
    size = np.bincount(labels.ravel())
    size[0] = 0
    rows, cols = ndimage.find_objects(labels)[int(np.argmax(size)) - 1]
    if size.max() > FILLED * (rows.stop - rows.start) * (cols.stop - cols.start):
        return None  # its largest mark is a surface, not strokes
    if rows.start == 0 or cols.start == 0 or rows.stop == x.shape[0] or cols.stop == x.shape[1]:
        return None  # its largest mark runs off the frame, as a desk's grain does and a digit framed doesn't
    if before >= INK_PIXELS and BESIDE * np.count_nonzero(second & first) >= before:
        return None
    return _bridged(x, ruled)


def _unframed(x: np.ndarray, marked: np.ndarray | None) -> bool:
    """Whether no mark of the ink `x` is a stroke the person framed: the frame's edge cuts every one, or, where the
    rest of what `marked` holds is looked at beside it, it is a surface (_surfaces) or a loop round that (_around)."""
    if marked is None and not (x[0].any() or x[-1].any() or x[:, 0].any() or x[:, -1].any()):
        return False
    labels, n = ndimage.label(x > 0, structure=np.ones((3, 3)))
    beside = _cut(labels, n, np.zeros(4))
    if marked is not None:
        beside |= _surfaces(labels, n) | _around(labels, n, marked & (x == 0))
    return n > 0 and bool(beside[1:].all())


def _around(labels: np.ndarray, n: int, rest: np.ndarray) -> np.ndarray:
    """Which of the `n` labelled marks are loops round the `rest` of the ink: round INK_PIXELS of it or more, and
    most of it, as a ring drawn round a digit in pencil is, or a form's box printed round it, where the digit was
    judged no ink beside it. Most: writing showing through the sheet, judged no ink, lies in a digit's loops too, but
    mostly beyond them."""
    out = np.zeros(n + 1, dtype=bool)
    total = np.count_nonzero(rest)
    need = max(INK_PIXELS, -(-total // 2))
    # Only a mark whose box holds that much of the rest can hold it in its loops: a page of 442 specks took 46 ms
    # to fill each one's holes, and the box's count, from sums over the rows and columns, takes none of that.
    sums = np.pad(rest.cumsum(0, dtype=np.int64).cumsum(1), ((1, 0), (1, 0)))
    for k, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        held = sums[rows.stop, cols.stop] - sums[rows.start, cols.stop] - sums[rows.stop, cols.start]
        if held + sums[rows.start, cols.start] >= need:
            mark = labels[rows, cols] == k
            inside = np.count_nonzero(rest[rows, cols] & ndimage.binary_fill_holes(mark) & ~mark)
            out[k] = inside >= INK_PIXELS and 2 * inside >= total
    return out


def _surfaces(labels: np.ndarray, n: int) -> np.ndarray:
    """Which of the `n` labelled marks are surfaces, not strokes, as the desk seen through a punched hole is: each a
    large part of all the marks hold (a BESIDE-th), solid (DISC of its box inked, and no hole in it), and no bar (a
    box under twice as long as wide). Not a speck (under INK_PIXELS), nor a grain of graphite, which is small beside
    the digit it is of, nor a 1 written upright, which fills its box too."""
    size = np.bincount(labels.ravel(), minlength=n + 1)
    size[0] = 0  # the paper
    judged = (size >= INK_PIXELS) & (BESIDE * size >= size.sum())
    boxes = _boxes(labels, judged)
    short, long = np.sort(boxes[:, 2:] - boxes[:, :2], axis=1).T
    surfaces = judged & (size > DISC * short * long) & (2 * short > long)
    for k in np.flatnonzero(surfaces):
        top, left, bottom, right = boxes[k]
        surfaces[k] = ndimage.label(np.pad(labels[top:bottom, left:right] != k, 1, constant_values=True))[1] == 1
    return surfaces


def _lifted(marks: np.ndarray, gains: np.ndarray | None, size: np.ndarray) -> np.ndarray:
    """The light's share that strengthened each labelled mark, on average: `gains` at the pixels labelled `marks`,
    with `size` pixels a mark; 1 where the light was even (None)."""
    if gains is None:
        return np.ones(size.size)
    return np.bincount(marks, gains, minlength=size.size) / np.maximum(size, 1)


def _denoised(x: np.ndarray, crowded: bool) -> tuple[np.ndarray, bool, float]:
    """The ink map `x` (in units of the strongest ink), whether the sensor's noise was smoothed away first, and
    the level that ink must reach in it.

    A dim room's sensor noise reaches the ink threshold at pixels all over the frame, and their specks widen the
    crop until the digit is a blot in a corner of it. Where it would, the noise is smoothed away first, and ink
    must stand out of what is left of it as well."""
    noise = _noise(x, crowded)
    noisy = bool(NOISE_SIGMAS * noise > INK_THRESHOLD)
    if noisy:
        x = ndimage.gaussian_filter(x, DENOISE_SIGMA)
        noise = _noise(x, crowded)
    return x, noisy, max(INK_THRESHOLD, NOISE_SIGMAS * noise)


def _without_rules(x: np.ndarray) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """The ink without the rules of lined or squared paper: thin straight lines across the sheet, which may fill
    only part of the frame (a note on a desk) and be turned in it; and the pixels of ink that went with the rules,
    for _bridged: with the axis they ran across (0 for the rows' rules, 1 for the columns'), each axis where any were
    taken off.

    Each rule's typical level (its median along its length, which a digit crosses only briefly) is taken off
    the pixels along it, so that a stroke crossing a rule keeps its ink. Only thin ink is searched, and only
    where there is enough of it for RULE_LINES rules: a digit alone, most of whose strokes are not thin, is
    spared the search. Fewer rules than that are rules where each is long and faint (LONE, FAINT)."""
    need = RULE_LINES * RULE_LENGTH
    ruled = []
    for axis in (0, 1):
        along = x if axis == 0 else x.T
        if len(along) <= 2 * (RULE_ROWS + 1):  # no room for rules apart
            continue
        # Counted over every 4th column first, which is all that most digits cost (a 560×560 canvas's ink map
        # took 0.07 ms more, 4%, with every column counted).
        if 4 * np.count_nonzero(_thin(along[:, ::4] > 0)) < need * along.shape[1]:
            continue
        thin = _thin(along > 0)
        if np.count_nonzero(thin) >= need * along.shape[1]:
            along, taken = _rules_removed(along, thin)
            x = along if axis == 0 else along.T
            if taken is not None:
                ruled.append((axis, taken if axis == 0 else taken.T))
    return x, ruled


def _thin(ink: np.ndarray) -> np.ndarray:
    """Ink with none RULE_ROWS + 1 rows above or below it, or beyond the frame's edge."""
    d = RULE_ROWS + 1
    thin = np.empty_like(ink)
    np.greater(ink[d:-d], ink[: -2 * d] | ink[2 * d :], out=thin[d:-d])
    np.greater(ink[:d], ink[d : 2 * d], out=thin[:d])
    np.greater(ink[-d:], ink[-2 * d : -d], out=thin[-d:])
    return thin


def _counts(ys: np.ndarray, centred: np.ndarray, angles: np.ndarray, offset: int, size: int) -> np.ndarray:
    """A Hough transform, angles × size: how many of the points lie on each row at each angle, rows counted from
    `offset` above the frame."""
    slopes = np.tan(np.deg2rad(angles))[:, None].astype(np.float32)
    rows = np.rint(ys[None] - slopes * centred[None]).astype(np.int64) + offset
    cells = (rows + size * np.arange(angles.size)[:, None]).ravel()
    return np.bincount(cells, minlength=size * angles.size).reshape(angles.size, size)


def _meeting(rows: np.ndarray, angles: np.ndarray, w: int) -> np.ndarray:
    """Which of the lines found for rules (each the row where it crosses the frame's middle, and its angle, in
    order) meet a neighbour inside the frame, as rules never do, not even seen in perspective: they converge
    beyond the sheet. A digit's thin strokes do."""
    slopes = np.tan(np.deg2rad(angles))
    with np.errstate(divide="ignore", invalid="ignore"):
        at = np.diff(rows) / (slopes[:-1] - slopes[1:])  # where each meets the next, from the frame's middle
    pair = np.abs(at) <= w / 2
    meeting = np.zeros(rows.size, dtype=bool)
    meeting[:-1] |= pair
    meeting[1:] |= pair
    return meeting


def _rules_removed(x: np.ndarray, thin: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """_without_rules() for rules along the rows, turned by up to ±RULE_TURN°, with `thin` the thin ink: the ink
    without them, and the pixels of ink that went with them (None where none were found).

    Each rule is a line at its own angle, found by a Hough transform over sampled pixels of the thin ink: first
    the sheet's turn, the angle at which the rows' counts are most concentrated, then each rule's own angle
    within ±6° of it."""
    h, w = x.shape
    ys, xs = np.nonzero(thin)
    ys, centred = ys.astype(np.float32), (xs - w / 2).astype(np.float32)
    # Rows are counted from this far above the frame, so that none is negative at the steepest angle: `+ h` was
    # not enough for an image over 19 times as wide as high (the fuzzer's 84×3 TIFF was a 500).
    offset = int(np.ceil(np.tan(np.deg2rad(RULE_TURN + 6)) * w / 2)) + 1
    size = h + 2 * offset
    every = -(-ys.size // COARSE_SAMPLE)
    # In bands of 4 rows: a rule 0.5° off a step drifts 2 rows from its middle to either end at 512 px.
    coarse = _counts(ys[::every] / 4, centred[::every] / 4, COARSE_ANGLES, offset // 4 + 1, size // 4 + 2)
    angles = COARSE_ANGLES[np.argmax((coarse.astype(np.float64) ** 2).sum(1))] + FINE_ANGLES
    every = -(-ys.size // RULE_SAMPLE)
    d = RULE_ROWS + 1
    counts = np.pad(_counts(ys[::every], centred[::every], angles, offset, size), ((0, 0), (d, d)))
    best = counts.argmax(axis=0)  # each row's likeliest angle
    most = counts[best, np.arange(counts.shape[1])]
    # A rule: a row that holds RULE_LENGTH of the frame at its angle, the most of the rows near it, and thin.
    # A digit's bar in a thick pen is not thin.
    at = np.arange(d, counts.shape[1] - d)
    near = np.max([most[at + step] for step in range(-RULE_ROWS, RULE_ROWS + 1) if step], axis=0)
    beyond = np.maximum(counts[best[at], at - d], counts[best[at], at + d])
    lines = at[(most[at] >= RULE_LENGTH * w / every) & (most[at] >= near) & (2 * beyond < most[at])]
    lines = lines[np.diff(lines, prepend=-d) > 1]  # of two equal rows side by side, the first
    alone = most * every >= LONE * w  # rows that hold a line long enough to be a rule alone
    # Where no line is long enough to be a rule alone, they may all be a digit's strokes, cropped close: a
    # ballpoint's 4 with a loop had its loop's side and its stem taken for rules, and more than half its ink with
    # them ("not a digit"). Those that meet inside the frame are. Not where a line is that long: a note's short
    # rules behind its digit, their angles a few degrees off for a desk's grain beside the note, seemed to meet at
    # the frame's edge, and were left as ink (an 8 and a 4 on lined notes on grained desks: "not a digit").
    if not alone[lines].any():
        lines = lines[~_meeting(lines, angles[best[lines]], w)]
    lone = lines.size < RULE_LINES or np.median(np.diff(lines)) * RULE_APART > np.median(most[lines]) * every
    if lone:
        lines = lines[alone[lines]]
        if lines.size == 0:
            return x, None
    chosen = best[lines]
    # A rule 2 px wide, or blurred, reaches the rows beside its middle (RULE_FLANK).
    ids, rows = [np.arange(lines.size)], [lines]
    for step in (-1, 1):
        going = np.ones(lines.size, dtype=bool)
        for side in (1, 2):
            going &= counts[chosen, lines + step * side] >= RULE_FLANK * most[lines]
            ids.append(np.flatnonzero(going))
            rows.append(lines[going] + step * side)
    rule_ids, rule_rows = np.concatenate(ids), np.concatenate(rows) - d - offset
    slopes = np.tan(np.deg2rad(angles[chosen[rule_ids]]))
    # Which rule each pixel lies on, if any: where each of its rows passes at each column.
    passes = np.rint(rule_rows[:, None] + slopes[:, None] * (np.arange(w) - w / 2)).astype(np.int64)
    columns = np.broadcast_to(np.arange(w), passes.shape)
    inside = (passes >= 0) & (passes < h)
    rule = np.full((h, w), -1, dtype=np.int64)
    rule[passes[inside], columns[inside]] = np.broadcast_to(rule_ids[:, None], passes.shape)[inside]
    ys, xs = np.nonzero(x)
    found = rule[ys, xs]
    on_rule = found >= 0
    y, c, r = ys[on_rule], xs[on_rule], found[on_rule]
    # One level for the whole rule: a digit's bar can lie along a rule for a while, where the median of a
    # stretch would be the bar's. (Levels by stretch, for rules in a shadow's edge, read no better.)
    names, index = np.unique(r, return_inverse=True)
    levels = np.asarray(ndimage.median(x[y, c], index, np.arange(names.size)), dtype=np.float32)
    if lone:
        levels[levels > FAINT] = 0
    x = x.copy()
    x[y, c] = np.maximum(x[y, c] - levels[index], 0)
    x[x < INK_THRESHOLD] = 0
    taken = np.zeros((h, w), dtype=bool)
    taken[y, c] = x[y, c] == 0
    return x, taken


def _bridged(x: np.ndarray, ruled: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """The ink `x`, its strokes whole again where they crossed the rules taken off (_without_rules: each axis they
    ran across, and the pixels of ink that went with them): such a pixel is ink again where ink lies on both its
    sides across the rule within BRIDGE pixels, as faint as the fainter. Only what was ink: the gaps between a
    dotted line's dots stay paper."""
    if not ruled:
        return x
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    if rows.size == 0:
        return x
    # A gap with ink on both its sides lies inside the box around the ink.
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    ink = x[box]
    beyond = ink.copy()  # the ink as it was kept, before any gap is put back
    for axis, taken in ruled:
        ys, xs = np.nonzero(taken[box] & (ink == 0))
        if ys.size == 0:
            continue
        across, along = (ys, xs) if axis == 0 else (xs, ys)
        side = beyond if axis == 0 else beyond.T
        near = np.clip(across[None] + np.arange(-BRIDGE, BRIDGE + 1)[:, None], 0, side.shape[0] - 1)
        seen = side[near, along[None]]  # the ink within BRIDGE of each gap, before it and after
        ink[ys, xs] = np.minimum(seen[:BRIDGE].max(axis=0), seen[BRIDGE + 1 :].max(axis=0))
    return x


def pen_width(ink: np.ndarray) -> float:
    """The stroke width of a mask of ink, in pixels: twice its area over its perimeter, since a stroke's outline
    runs along both its sides. The perimeter is counted in pixel edges, which overcount a slanted outline by 4/π
    on average (Cauchy-Crofton), so that is taken off (OUTLINE). Not the distance transform along the centre
    line: this costs 10 µs on a 20×20 crop, where that costs 80."""
    area = np.count_nonzero(ink)
    inside = np.count_nonzero(ink[1:] != ink[:-1]) + np.count_nonzero(ink[:, 1:] != ink[:, :-1])
    # The outline along the mask's own edges counts too: every ink pixel there has an edge on the border.
    border = np.count_nonzero(ink[[0, -1]]) + np.count_nonzero(ink[:, [0, -1]])
    return 2 * area / ((inside + border) * OUTLINE)


def _pen_widths(labels: np.ndarray, size: np.ndarray) -> np.ndarray:
    """pen_width() of each labelled mark, with `size` pixels each, in one pass over them all, however many noise
    makes: marks labelled with 8 neighbours never touch, so every edge between two labels is one of a mark's."""
    count = functools.partial(np.bincount, minlength=size.size)
    edges = count(labels[[0, -1]].ravel()) + count(labels[:, [0, -1]].ravel())
    for a, b in ((labels[1:], labels[:-1]), (labels[:, 1:], labels[:, :-1])):
        differ = a != b
        edges += count(a[differ]) + count(b[differ])
    return 2 * size / (np.maximum(edges, 1) * OUTLINE)


def _stray(
    at: tuple[np.ndarray, ...], marks: np.ndarray, size: np.ndarray, large: np.ndarray, pen: float
) -> np.ndarray:
    """Which of the labelled marks, with `size` pixels each, are specks astray (DOT): beyond a pen's width from
    the box around the `large` marks, and smaller than a piece of its stroke; and where SPECKS or more are, the
    specks inside the box no larger than they (within ALIKE of their width). `at` holds the rows and columns of the
    inked pixels and `marks` their labels. The pen is the thinnest of the large marks: a number's digits may come in
    different pens. Pixel by pixel, not mark by mark: noise makes thousands (a 512×512 image of it read in 47 ms
    with each mark's box found, and in about 30, where 24 without this)."""
    digit = large[marks]
    beyond = np.zeros(marks.size, dtype=bool)
    for along in at:
        beyond |= (along < along[digit].min() - pen) | (along > along[digit].max() + pen)
    small = size < DOT * pen**2
    astray = (np.bincount(marks[beyond], minlength=size.size) > 0) & small
    if np.count_nonzero(astray) >= SPECKS:  # the paper's own: no larger inside the box than beyond it
        astray |= small & (size <= ALIKE**2 * size[astray].max())
    return astray


def _riddled(labels: np.ndarray, judged: np.ndarray, pen: float) -> np.ndarray:
    """Which of the `judged` labelled marks hold PINHOLES or more holes smaller than the square of the pen."""
    out = np.zeros_like(judged)
    boxes = ndimage.find_objects(labels)
    for k in np.flatnonzero(judged):
        mark = labels[boxes[k - 1]] == k
        holes, _ = ndimage.label(ndimage.binary_fill_holes(mark) & ~mark)
        out[k] = np.count_nonzero(np.bincount(holes.ravel())[1:] < pen**2) >= PINHOLES
    return out


def _boxes(labels: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """The box around each of the `judged` labelled marks, as its top and left rows and columns and those past its
    bottom and right; 0 for the rest."""
    found = ndimage.find_objects(labels)
    boxes = np.zeros((judged.size, 4), dtype=np.int64)
    for k in np.flatnonzero(judged):
        rows, cols = found[k - 1]
        boxes[k] = rows.start, cols.start, rows.stop, cols.stop
    return boxes


def _rings(
    labels: np.ndarray, judged: np.ndarray, boxes: np.ndarray, sides: np.ndarray, pens: np.ndarray, margins: np.ndarray
) -> np.ndarray:
    """Which of the `judged` labelled marks, with their `boxes` (_boxes), the boxes' shorter and longer `sides` and
    their `pens`, hold another of them inside a loop, one as long as RING of the loop's box is across, its gaps up to
    GAP pens wide bridged. The frame's edge closes a loop where it runs within two of its pens of the loop's box, the
    labels lying `margins` in from its top, left, bottom and right: a ring that the frame cuts, or whose ink fades out
    short of it. Only the RINGS marks with the largest boxes are looked at, since a ring's box holds the digit's:
    however many marks there are, the cost is a few loops filled."""
    marks = np.flatnonzero(judged)
    outer = marks[np.argsort(-sides[marks].prod(1), kind="stable")[:RINGS]]
    inner = boxes[marks][None]
    # [i, j]: mark j lies in the box of the i-th outer mark, long enough to be a digit inside it.
    held = (
        (inner[..., :2] >= boxes[outer][:, None, :2]).all(2)
        & (inner[..., 2:] <= boxes[outer][:, None, 2:]).all(2)
        & (sides[marks][None, :, 1] >= RING * sides[outer][:, None, 0])
        & (marks[None] != outer[:, None])
    )
    rings = np.zeros_like(judged)
    # A hand's loop need not meet (GAP). Its gaps are bridged only where no loop closes without, and only in the
    # largest mark whose box holds a digit, as a ring's does: bridging costs two distance transforms over the box,
    # and four nested rings left open took 66 ms to read rather than 24 while each was bridged.
    bridge = True
    for k, digits in zip(outer, held, strict=True):
        if digits.any():
            top, left, bottom, right = boxes[k]
            area = labels[top:bottom, left:right]
            edge = np.array([top, left, labels.shape[0] - bottom, labels.shape[1] - right]) + margins <= 2 * pens[k]
            rings[k] = any(
                np.isin(area[_loops(area == k, edge, reach) & (area != k)], marks[digits]).any()
                for reach in (0, GAP * pens[k] / 2)[: 1 + bridge]
            )
            bridge = False
    return rings


def _loops(mark: np.ndarray, walls: np.ndarray, reach: float) -> np.ndarray:
    """The `mark` with every loop it closes filled, its gaps up to twice `reach` wide bridged first, and the frame's
    edge closing them where `walls` (top, left, bottom, right) says."""
    above, before, below, after = walls
    walled = np.pad(mark, 1, constant_values=((above, below), (before, after)))
    if reach:  # closed by a disk: what lies within reach of the mark, less what lies within reach of what doesn't
        walled = ndimage.distance_transform_edt(ndimage.distance_transform_edt(~walled) <= reach) > reach
    return ndimage.binary_fill_holes(walled)[1:-1, 1:-1]


def _underlines(
    labels: np.ndarray, judged: np.ndarray, boxes: np.ndarray, pens: np.ndarray, cut: np.ndarray
) -> np.ndarray:
    """Which of the `judged` labelled marks, with their `boxes` (_boxes) and `pens`, are lines drawn under the
    others: one stroke across, its box FLAT times as wide as tall, apart from and under all of them, and as wide as
    UNDER of them. One stroke across lies in a box ACROSS pens tall; or, drawn at a slant or bowed, is no taller
    than that wherever it is crossed, and stands CLEAR pens clear of every other mark, and the frame doesn't `cut`
    it."""
    marks = np.flatnonzero(judged)
    tall, wide = (boxes[:, 2:] - boxes[:, :2]).T
    flat = np.flatnonzero(judged & (wide >= FLAT * tall))
    under = np.zeros_like(judged)
    if marks.size < 2 or not flat.size:
        return under
    k = flat[np.argmax(boxes[flat, 0])]  # only the lowest can lie under all the others
    rest = boxes[marks[marks != k]]
    top, left, bottom, right = boxes[k]
    if top < rest[:, 2].max() + pens[k] / 2 or wide[k] < UNDER * (rest[:, 3].max() - rest[:, 1].min()):
        return under
    if tall[k] <= ACROSS * pens[k]:
        under[k] = True
        return under
    line = labels[top:bottom, left:right] == k
    crossed = (line.shape[0] - np.argmax(line[::-1], 0) - np.argmax(line, 0))[line.any(0)]
    if crossed.max() <= ACROSS * pens[k] and not cut[k]:
        # Only the marks within reach of the line: its box widened by CLEAR pens, but below, where none lies.
        reach = int(np.ceil(CLEAR * pens[k]))
        near = labels[max(top - reach, 0) : bottom, max(left - reach, 0) : right + reach]
        others = judged[near] & (near != k)
        under[k] = not others.any() or ndimage.distance_transform_edt(near != k)[others].min() >= CLEAR * pens[k]
    return under


def _blobs(labels: np.ndarray, judged: np.ndarray, size: np.ndarray, sides: np.ndarray, pen: float) -> np.ndarray:
    """Which of the `judged` labelled marks, with `size` pixels each and their boxes' `sides` (_boxes), are blobs
    beside the strokes among them (BLOB, BLOB_SIZE); none where none is a stroke. Only marks short beside the
    longest, and no more than a disk across their box's shorter side could make a blob of, are looked at: a
    number's digits never are. Their largest inscribed disks come from one distance transform over the box around
    them: labelled with 8 neighbours, no two marks touch, so each pixel's distance to the paper is its own mark's."""
    sides = np.where(judged[:, None], sides, 0)
    # A disk inside a mark reaches half a pixel past the middle of its shorter side at most.
    looked = judged & (sides[:, 1] < BLOB_SIZE * sides[:, 1].max()) & (size < BLOB * np.pi * (sides[:, 0] + 1) ** 2 / 4)
    if not looked.any():
        return looked
    inked = looked[labels]
    rows, cols = np.flatnonzero(inked.any(1)), np.flatnonzero(inked.any(0))
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    inked = inked[box]
    radius = np.zeros(judged.size)
    np.maximum.at(radius, labels[box][inked], ndimage.distance_transform_edt(np.pad(inked, 1))[1:-1, 1:-1][inked])
    blob = looked & (size < BLOB * np.pi * radius**2) & (2 * radius > pen)
    strokes = judged & ~blob
    if not strokes.any():  # nothing but blobs: one of them is the digit
        return np.zeros_like(judged)
    return blob & (sides[:, 1] < BLOB_SIZE * sides[strokes, 1].max())


def _edges(labels: np.ndarray, n: int, margins: np.ndarray) -> np.ndarray:
    """Which of the `n` labelled marks each of the frame's edges cuts, its top, left, bottom and right in turn, the
    labels lying `margins` in from them."""
    cut = np.zeros((4, n + 1), dtype=bool)
    for edge, along, margin in zip(cut, (labels[0], labels[:, 0], labels[-1], labels[:, -1]), margins, strict=True):
        edge[along] = margin == 0
    return cut


def _cut(labels: np.ndarray, n: int, margins: np.ndarray) -> np.ndarray:
    """Which of the `n` labelled marks the frame's edge cuts (_edges)."""
    return np.logical_or.reduce(_edges(labels, n, margins))


def _across(edges: np.ndarray) -> np.ndarray:
    """Which marks run across the frame, from edge to edge, of those that its `edges` cut (_edges)."""
    return (edges[0] & edges[2]) | (edges[1] & edges[3])


def _printed(judged: np.ndarray, pens: np.ndarray, sides: np.ndarray, digit: int) -> np.ndarray:
    """Which of the `judged` labelled marks, each in a pen of `pens` and with its box's `sides` (_boxes), are
    printed lines beside the `digit` mark (THIN); none where no digit is left (0, the paper's label, whose pen is
    0)."""
    return judged & (pens < THIN * pens[digit]) & (sides[:, 1] >= sides[digit, 1])


def _without_shading(
    x: np.ndarray,
    page: _Page | None,
    noisy: bool,
    split: bool = True,
) -> np.ndarray:
    """Only marks that look like ink. What the paper's estimate left of a shadow's edge or a vignette's
    corners, and sensor noise over dark paper, pass the ink threshold but stay soft: they never reach
    SOLID, or their mean stays under SHADING. A pen's stroke reaches the strongest ink along its middle
    and holds near it: even a ballpoint line 2 px wide has a mean over 0.5.

    `page.gain` is the light's share that _ink multiplied the ink by (None, or no `page`, where it multiplied
    nothing). A dark desk's grain, strengthened up to MAX_GAIN times as ink in a shadow is, passes both: its marks
    averaged 0.40-0.54 of the strongest ink where the digits' averaged 0.65-0.90 (desk photos of 40 training
    digits, 1st to 95th percentiles). One pen draws a digit, so where the gain is LIFTED or more, a mark much softer
    than the one with the most ink (SOFTER) is texture. Not where the light is even: a pencil presses
    unevenly, and the fainter digit of a number, or a faint piece of one, is as soft (numbers of training
    digits: of 300 with the digits touching, one lost its 4, whose faint top stood apart, when every soft mark was
    dropped). A dark desk's knots are as strong as ink, but specks (SPECK) on a surface lit far less than the
    mark with the most ink (DIMMER): the sheet and its digit are one surface, and a digit is no speck. Nor is a
    speck astray, smaller than a piece of the pen's stroke and beyond the digit's box (DOT). The mark with the
    most ink is counted among those that reach the strongest ink (STRONG). Nor is a surface, most of which stands
    out of the paper only as far as a marker's widest strokes, not within a few pens (PEN_REACH, SURFACE): `page`
    says, where _surroundings set the paper's level, how much higher it is under each pixel within a reach; nor a
    piece of a surface that the paper's level cut off, the surface running on beyond it at its level (PIECE). A
    mark that the frame's edge cuts, on a surface the light's share strengthened, is one unless it is strong
    with the light's share short of its cap (DESK). Nor is a large mark short of the strongest ink that pinholes
    riddle, where the sensor's noise was `noisy` enough to be smoothed away (PINHOLES); and where it wasn't, nor
    is a dot beside a stroke (BLOB). Nor is what the person framing the digit didn't write: a mark that the frame
    cuts, softer than the digit or in a wider pen (ALIKE), a line printed far finer than it (THIN), a loop round
    it (RING) or a line under it (FLAT).

    But the mark with the most ink, where it is the only large one that reaches the strongest ink and the frame
    doesn't cut it, holds the digit: if it is shading or a surface as a whole, the digit lies on that surface (a
    highlighter's band drawn across it, which joins its strokes in one mark). While `split`, its strokes are kept
    and looked at again without the rest of it: its pixels that reach SOLID where its mean is shading's, and
    where it is a surface, those that stand out of the paper within reach."""
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    if rows.size == 0:
        return x
    # Only the box around the ink is labelled: a digit on a page takes a fraction of it.
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    labels, n = ndimage.label(x[box] > 0, structure=np.ones((3, 3)))
    # How far the labelled box lies in from the frame's top, left, bottom and right.
    margins = np.array([rows[0], cols[0], x.shape[0] - 1 - rows[-1], x.shape[1] - 1 - cols[-1]])
    if page is not None and split and page.cut_off(labels, n, box, x, margins):
        labels, n = ndimage.label(x[box] > 0, structure=np.ones((3, 3)))
        if n == 0:  # it was all pieces of surfaces
            return x
    if n == 1 and page is None:  # one mark on evenly lit paper: no surface for a digit to lie on
        return x
    # Counted over the ink's pixels with bincount: ndimage.maximum sorts the whole image, 30 ms at 512×384.
    inked = np.nonzero(labels)
    marks, values = labels[inked], x[box][inked]
    total = np.bincount(marks, values, minlength=n + 1)
    size = np.bincount(marks, minlength=n + 1)
    mean = total / np.maximum(size, 1)
    peak = np.zeros(n + 1, dtype=values.dtype)
    np.maximum.at(peak, marks, values)
    ink = (mean >= SHADING) & (peak >= SOLID)
    strong = peak >= STRONG * peak.max()
    main = np.argmax(np.where(strong, total, 0))
    large = size >= SPECK * size[main]
    pens = _pen_widths(labels, size)
    ink &= ~_stray(inked, marks, size, large, pens[large].min())  # the paper's size is 0: never large
    edges = _edges(labels, n, margins)
    cut = np.logical_or.reduce(edges)
    # Another mark that could be the digit, or the frame's edge, says the mark with the most ink may be the desk
    # (on a desk under a vignette, a wedge of grain beside a 0 was split into strokes: "several digits").
    split &= np.count_nonzero(strong & large) == 1 and not cut[main]
    if n == 1 and not split:  # nothing below changes one mark but a split
        return x
    mine = marks == main

    def digit(kept: np.ndarray) -> bool:
        """Whether the `kept` pixels of the mark with the most ink hold more ink than any other mark: a digit's
        strokes, not a desk's knots (a 3 crossed by rules, in pieces beside a desk's wedge, was lost to a speck)."""
        return bool(values[mine & kept].sum() > np.delete(total, main).max())

    def strokes(kept: np.ndarray) -> np.ndarray:
        """The marks again, with only the `kept` pixels of the mark with the most ink."""
        gone = mine & ~kept
        x[box][inked[0][gone], inked[1][gone]] = 0
        return _without_shading(x, page, noisy, split=False)

    if split and mean[main] < SHADING and digit(solid := values >= SOLID):
        return strokes(solid)
    gain = None if page is None else page.gain
    lifted = _lifted(marks, None if gain is None else gain[box][inked], size)
    # In the pen the person wrote with: as strong as the strongest mark they framed, not as the strongest in the
    # photo, which a pen lying on the sheet may be; but a soft mark the light's share lifted is a desk's (ALIKE).
    framed = ink & large & ~cut & (strong | (lifted < LIFTED))
    framed &= peak >= STRONG * peak[framed].max(initial=0)
    across = _across(edges)
    framed_pens = pens[framed]
    wider = pens > ALIKE * framed_pens.max(initial=0)
    narrower = across & (ALIKE * pens < framed_pens.min(initial=np.inf))
    lying = cut & framed.any() & (~strong | wider | narrower)
    ink &= ~lying
    widest = pens[(strong | framed) & ~lying].max()  # of the marks as strong as a digit: no surface or lying pen
    reach = round(PEN_REACH * widest)
    if page is not None and reach < _paper_reach(x):
        stroke = values - page.rise(reach, box)[inked] >= INK_THRESHOLD
        surface = np.bincount(marks, stroke, minlength=n + 1) < SURFACE * size
        if split and surface[main] and digit(stroke):
            return strokes(stroke)
        ink &= ~surface
    if n == 1:  # one mark is ink, unless the digit lay on it (above)
        return x
    if gain is not None:
        ink &= (mean >= SOFTER * mean[main]) | (lifted < LIFTED)
        ink &= (size >= SPECK * size[main]) | (lifted < DIMMER * lifted[main])
        # Beyond the frame, no paper can be looked for: a surface the frame's edge cuts is known by its strength,
        # unless the gain that made it strong was at its cap.
        ink &= ~cut | (strong & (lifted < DESK * MAX_GAIN)) | (lifted < LIFTED)
    if noisy:
        ink &= ~_riddled(labels, ink & large & ~strong, widest)
    ink[0] = False
    if np.count_nonzero(ink) > 1:  # one mark is no ring round a digit, line beside or under one, or blob
        boxes = _boxes(labels, ink)
        sides = np.sort(boxes[:, 2:] - boxes[:, :2], axis=1)
        ink &= ~_rings(labels, ink, boxes, sides, pens, margins)
        ink &= ~_underlines(labels, ink, boxes, pens, cut)
        written = (framed if (framed & ink).any() else strong) & ink
        ink &= ~_printed(ink, pens, sides, int(np.argmax(np.where(written, total, 0))))
        if not noisy and np.count_nonzero(ink) > 1:
            ink &= ~_blobs(labels, ink, size, sides, widest)
    out = np.zeros_like(x)
    out[box] = np.where(ink[labels], x[box], np.float32(0))
    return out


def ink_map(im: Image.Image) -> np.ndarray:
    """The ink of any decoded image, bright on black in [0,1], at the decoded size; paper is 0."""
    gray, alpha = _gray_and_alpha(im)
    if alpha is not None:
        gray = _flatten_alpha(gray, alpha)
    return _ink(gray)
